// Every role assignment of the deployment, at the narrowest scope that works. Role definition GUIDs live in
// the `roles` table below and nowhere else in infra/ (tests/unit/test_infra.py checks both).
// Assignment names are guid(scope id, principal id, role id); the app and the system topic are
// ServicePrincipals. Developer assignments (principalId from azd) exist only when developerPrincipalId is set,
// and leave principalType out so they work for a user as well as for a CI service principal.

@description('Principal id of the user-assigned identity the function app runs as.')
param appPrincipalId string

@description('Principal id of the identity of the registry system topic (it dead-letters to blob storage).')
param systemTopicPrincipalId string

@description('Object id of the developer running azd; empty means no developer assignments.')
param developerPrincipalId string = ''

param storageAccountName string

@description('The storage account that holds acrsync\'s tables and nothing else.')
param stateStorageAccountName string
param serviceBusNamespaceName string
param queueName string
param eventsTopicName string
param keyVaultName string
param applicationInsightsName string

@description('The registry, which may live in another resource group.')
param registryName string
param registrySubscriptionId string
param registryResourceGroupName string

@description('Resource id of the resource group holding the sites\' Arc connected clusters; empty: none.')
param siteClustersResourceGroupId string = ''

@description('Resource id of the Log Analytics workspace of the sites\' Container Insights; empty: none.')
param containerInsightsWorkspaceId string = ''

// Built-in roles: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39' // Azure Service Bus Data Sender
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0' // Azure Service Bus Data Receiver
  eventGridDataSender: 'd5a91429-5739-47e2-a06b-3470a27159e7' // EventGrid Data Sender
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6' // Key Vault Secrets User
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher
  reader: 'acdd72a7-3385-48ef-bd42-f606fba81ae7' // Reader
  logAnalyticsReader: '73c42c96-874c-492b-b04d-ab87d138a893' // Log Analytics Reader
  acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d' // AcrPull
}

var withDeveloper = !empty(developerPrincipalId)

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource stateStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: stateStorageAccountName
}

resource serviceBus 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

resource syncQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' existing = {
  parent: serviceBus
  name: queueName
}

resource eventsTopic 'Microsoft.EventGrid/topics@2025-02-15' existing = {
  name: eventsTopicName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// ---- the function app's identity ----

// Functions host storage and the Flex Consumption deployment container.
resource appStorageBlob 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The state store. Entity-group transactions (every row write with its evidence) go to the account-level
// /$batch URL, which a role on one table may not authorize: the role is on the account that holds only
// acrsync's tables (infra/app/state-storage.bicep).
resource appTables 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(stateStorage.id, appPrincipalId, roles.storageTableDataContributor)
  scope: stateStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Fan-out, re-checks and the sweeper send jobs.
resource appQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(syncQueue.id, appPrincipalId, roles.serviceBusDataSender)
  scope: syncQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The site_sync trigger and its dead-letter twin receive.
resource appQueueReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(syncQueue.id, appPrincipalId, roles.serviceBusDataReceiver)
  scope: syncQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// acrsync's own events out.
resource appEventsSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventsTopic.id, appPrincipalId, roles.eventGridDataSender)
  scope: eventsTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventGridDataSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Site client tokens.
resource appSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Entra ID ingestion into Application Insights (local auth is off).
resource appTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Connected registries, sync tokens and scope maps through ARM: Reader on the registry, which may be in
// another resource group (or subscription), so the assignment is deployed there.
module registryReader 'rbac-registry.bicep' = {
  // unique per app identity: several environments may grant Reader on the same registry
  name: 'rbac-registry-reader-${uniqueString(appPrincipalId)}'
  scope: resourceGroup(registrySubscriptionId, registryResourceGroupName)
  params: {
    registryName: registryName
    principalId: appPrincipalId
    roleId: roles.reader
  }
}

// What a release weighs (shared/adapters/parent_registry.py): its manifests through the registry's data
// plane. AcrPull is the least built-in role that reads manifests; it also reads blobs, which acrsync never does.
module registryPuller 'rbac-registry.bicep' = {
  name: 'rbac-registry-pull-${uniqueString(appPrincipalId)}'
  scope: resourceGroup(registrySubscriptionId, registryResourceGroupName)
  params: {
    registryName: registryName
    principalId: appPrincipalId
    roleId: roles.acrPull
  }
}

// What runs at each site (shared/adapters/container_insights.py, shared/adapters/arc.py): Reader on the
// group of the sites' Arc clusters (connectivity, the connected registry extension, resource-context
// queries) and Log Analytics Reader on the workspace their Container Insights writes to. Both live outside
// this deployment, so they are parameters (README: Azure setup) and the assignments deploy there.
var clusterParts = split(siteClustersResourceGroupId, '/')
var workspaceParts = split(containerInsightsWorkspaceId, '/')

module clustersReader 'rbac-clusters.bicep' = if (!empty(siteClustersResourceGroupId)) {
  name: 'rbac-clusters-reader-${uniqueString(appPrincipalId)}'
  scope: resourceGroup(clusterParts[2], clusterParts[4])
  params: {
    principalId: appPrincipalId
    roleId: roles.reader
  }
}

module workspaceReader 'rbac-workspace.bicep' = if (!empty(containerInsightsWorkspaceId)) {
  name: 'rbac-workspace-reader-${uniqueString(appPrincipalId)}'
  scope: resourceGroup(workspaceParts[2], workspaceParts[4])
  params: {
    workspaceName: last(workspaceParts)
    principalId: appPrincipalId
    roleId: roles.logAnalyticsReader
  }
}

// ---- the registry system topic's identity ----

// Dead-lettering to the eg-deadletter container (container scope can fail validation: account scope).
resource systemTopicDeadLetter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, systemTopicPrincipalId, roles.storageBlobDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: systemTopicPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---- the developer (optional) ----

// `acrsync sites import` and a laptop run against this environment's tables.
resource developerTables 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withDeveloper) {
  name: guid(stateStorage.id, developerPrincipalId, roles.storageTableDataContributor)
  scope: stateStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: developerPrincipalId
  }
}

resource developerQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withDeveloper) {
  name: guid(syncQueue.id, developerPrincipalId, roles.serviceBusDataSender)
  scope: syncQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: developerPrincipalId
  }
}

resource developerQueueReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withDeveloper) {
  name: guid(syncQueue.id, developerPrincipalId, roles.serviceBusDataReceiver)
  scope: syncQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: developerPrincipalId
  }
}
