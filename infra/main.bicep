// acrsync on Azure: Function App (Flex Consumption) + Table Storage + Service Bus + Event Grid + Key Vault
// + Application Insights, all identity-based. The Event Grid subscription from the registry's system topic to
// the function `on_acr_event` is created after code deployment by the postdeploy hook
// (scripts/postdeploy.sh, infra/hooks/eventgrid-subscription.bicep): the function must exist first.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; feeds the resource token and the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Region of every resource except the registry system topic, which follows the registry. Pick a region that offers Flex Consumption.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the person running azd (azd sets AZURE_PRINCIPAL_ID); gets data roles for local debugging when assignDeveloperRoles is true. May be empty.')
param principalId string

@minLength(1)
@description('Resource id of the existing Premium registry: /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.ContainerRegistry/registries/<name>. It must be in the subscription you deploy to (an Event Grid system topic lives in the subscription of its source); its resource group may differ.')
param acrResourceId string

@description('Resource id of the resource group holding the sites\' Arc connected clusters (/subscriptions/<sub>/resourceGroups/<rg>): the app reads their connectivity, connected registry extension and Container Insights. Empty: none.')
param siteClustersResourceGroupId string = ''

@description('Resource id of the Log Analytics workspace the sites\' Container Insights writes to: the app gets Log Analytics Reader there. Empty: none.')
param containerInsightsWorkspaceId string = ''

@description('Service Bus tier: Standard has sessions and duplicate detection; Premium adds private endpoints and large messages.')
@allowed([
  'Standard'
  'Premium'
])
param serviceBusSku string = 'Standard'

@description('Give principalId data roles (Table Storage, the jobs queue) so a developer can run acrsync against this environment.')
param assignDeveloperRoles bool = true

@description('Maximum Flex Consumption instances.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Memory per Flex Consumption instance (MB).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

// Name overrides: empty means the default '<abbreviation><resourceToken>'.
@description('Resource group name (default rg-<environmentName>).')
param resourceGroupName string = ''
@description('Function app name.')
param functionAppName string = ''
@description('Flex Consumption plan name.')
param appServicePlanName string = ''
@description('User-assigned managed identity name.')
param identityName string = ''
@description('Storage account name for the Functions host, deployments and dead letters (3-24 lowercase letters and digits).')
param storageAccountName string = ''
@description('Storage account name for acrsync\'s tables, which hold nothing else (3-24 lowercase letters and digits).')
param stateStorageAccountName string = ''
@description('Put App Service Authentication (Microsoft Entra ID) in front of the app: callers need a token for the app registration authClientId, whose app roles (Status.Read, Sync.Operate) decide what they may do, and acrsync requires those roles (ACRSYNC_REQUIRE_ROLES). See the README.')
param enableAppServiceAuth bool = false
@description('Client id of the Entra app registration that defines the app roles; required when enableAppServiceAuth is true.')
param authClientId string = ''
@description('Service Bus namespace name.')
param serviceBusNamespaceName string = ''
@description('Event Grid custom topic for the events acrsync publishes.')
param eventsTopicName string = ''
@description('Event Grid system topic on the registry. A registry can have only one system topic: if it already has one, delete it or deploy this template against a registry without one.')
param acrSystemTopicName string = ''
@description('Key Vault name (3-24 characters, globally unique).')
param keyVaultName string = ''
@description('Log Analytics workspace name.')
param logAnalyticsName string = ''
@description('Application Insights name.')
param applicationInsightsName string = ''

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
// The azd service in azure.yaml; azd finds the function app by this tag.
var serviceName = 'api'

// What the code expects (shared/config.py, shared/adapters/azure_tables.py); tests/unit/test_infra.py checks.
var syncQueueName = 'site-sync'
var tablePrefix = 'acrsync'
var tableNames = [
  '${tablePrefix}sites'
  '${tablePrefix}releases'
  '${tablePrefix}releaseindex'
  '${tablePrefix}siteindex'
  '${tablePrefix}siteledger'
]
var deadLetterContainerName = 'eg-deadletter'

var appName = empty(functionAppName) ? '${abbrs.webSitesFunctions}${resourceToken}' : functionAppName
var deploymentContainerName = toLower('app-package-${take(appName, 32)}-${take(resourceToken, 7)}')
var stName = empty(storageAccountName) ? '${abbrs.storageStorageAccounts}${resourceToken}' : storageAccountName
var stateStName = empty(stateStorageAccountName) ? '${abbrs.storageStorageAccounts}state${resourceToken}' : stateStorageAccountName
var sbName = empty(serviceBusNamespaceName) ? '${abbrs.serviceBusNamespaces}${resourceToken}' : serviceBusNamespaceName
var egTopicName = empty(eventsTopicName) ? '${abbrs.eventGridDomainsTopics}${resourceToken}' : eventsTopicName
var egSystemTopicName = empty(acrSystemTopicName) ? '${abbrs.eventGridSystemTopics}acr-${resourceToken}' : acrSystemTopicName
var kvName = empty(keyVaultName) ? '${abbrs.keyVaultVaults}${resourceToken}' : keyVaultName

// /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.ContainerRegistry/registries/<name>
var acrParts = split(acrResourceId, '/')
var acrSubscriptionId = acrParts[2]
var acrResourceGroupName = acrParts[4]
var acrName = last(acrParts)

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? '${abbrs.resourcesResourceGroups}${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

resource acr 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: acrName
  scope: resourceGroup(acrSubscriptionId, acrResourceGroupName)
}

module identity 'br/public:avm/res/managed-identity/user-assigned-identity:0.4.1' = {
  name: 'identity'
  scope: rg
  params: {
    name: empty(identityName) ? '${abbrs.managedIdentityUserAssignedIdentities}${resourceToken}' : identityName
    location: location
    tags: tags
  }
}

module appServicePlan 'br/public:avm/res/web/serverfarm:0.1.1' = {
  name: 'appserviceplan'
  scope: rg
  params: {
    name: empty(appServicePlanName) ? '${abbrs.webServerFarms}${resourceToken}' : appServicePlanName
    sku: {
      name: 'FC1'
      tier: 'FlexConsumption'
    }
    reserved: true
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: stName
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
  }
}

module stateStorage 'app/state-storage.bicep' = {
  name: 'state-storage'
  scope: rg
  params: {
    name: stateStName
    location: location
    tags: tags
    tableNames: tableNames
  }
}

module messaging 'app/messaging.bicep' = {
  name: 'messaging'
  scope: rg
  params: {
    name: sbName
    location: location
    tags: tags
    sku: serviceBusSku
    queueName: syncQueueName
  }
}

module eventGrid 'app/eventgrid.bicep' = {
  name: 'eventgrid'
  scope: rg
  params: {
    eventsTopicName: egTopicName
    location: location
    systemTopicName: egSystemTopicName
    registryId: acr.id
    registryLocation: acr.location
    tags: tags
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: kvName
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: empty(logAnalyticsName) ? '${abbrs.operationalInsightsWorkspaces}${resourceToken}' : logAnalyticsName
    applicationInsightsName: empty(applicationInsightsName) ? '${abbrs.insightsComponents}${resourceToken}' : applicationInsightsName
    location: location
    tags: tags
  }
}

module api 'app/function.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: appName
    location: location
    tags: union(tags, {
      'azd-service-name': serviceName
    })
    appServicePlanId: appServicePlan.outputs.resourceId
    identityId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    serviceBusFqdn: messaging.outputs.fqdn
    syncQueueName: syncQueueName
    tableEndpoint: stateStorage.outputs.tableEndpoint
    eventsTopicEndpoint: eventGrid.outputs.eventsTopicEndpoint
    registryLoginServer: acr.properties.loginServer
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    enableAppServiceAuth: enableAppServiceAuth
    authClientId: authClientId
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    appPrincipalId: identity.outputs.principalId
    systemTopicPrincipalId: eventGrid.outputs.systemTopicPrincipalId
    developerPrincipalId: assignDeveloperRoles ? principalId : ''
    storageAccountName: storage.outputs.name
    stateStorageAccountName: stateStorage.outputs.name
    serviceBusNamespaceName: messaging.outputs.name
    queueName: syncQueueName
    eventsTopicName: eventGrid.outputs.eventsTopicName
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.name
    registryName: acrName
    registrySubscriptionId: acrSubscriptionId
    registryResourceGroupName: acrResourceGroupName
    siteClustersResourceGroupId: siteClustersResourceGroupId
    containerInsightsWorkspaceId: containerInsightsWorkspaceId
  }
}

module dashboards 'app/dashboards.bicep' = {
  name: 'dashboards'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.resourceId
    serviceBusNamespaceId: messaging.outputs.resourceId
    syncQueueName: syncQueueName
    systemTopicId: eventGrid.outputs.systemTopicId
    eventsTopicId: eventGrid.outputs.eventsTopicId
  }
}

// UPPER_SNAKE outputs become azd environment values (azd env get-values), read by the hooks and the README.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output RESOURCE_GROUP string = rg.name
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_BASE_URL string = 'https://${api.outputs.defaultHostname}'
output AZURE_FUNCTION_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STATE_STORAGE_ACCOUNT_NAME string = stateStorage.outputs.name
output SYNC_TABLE_ENDPOINT string = stateStorage.outputs.tableEndpoint
output EG_DEADLETTER_CONTAINER string = deadLetterContainerName
output SERVICEBUS_NAMESPACE string = messaging.outputs.name
output SERVICEBUS_FQDN string = messaging.outputs.fqdn
output SYNC_QUEUE string = syncQueueName
output EVENTS_TOPIC_NAME string = eventGrid.outputs.eventsTopicName
output EVENTS_TOPIC_ENDPOINT string = eventGrid.outputs.eventsTopicEndpoint
output ACR_SYSTEM_TOPIC_NAME string = eventGrid.outputs.systemTopicName
output ACR_LOGIN_SERVER string = acr.properties.loginServer
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_ENDPOINT string = keyVault.outputs.uri
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString
output AZURE_WORKBOOK_ID string = dashboards.outputs.workbookId
