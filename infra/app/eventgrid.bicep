// Event Grid: the system topic on the existing registry (events in) and a custom topic (acrsync's events out).
// The system topic's subscription to the function on_acr_event is created by the postdeploy hook
// (infra/hooks/eventgrid-subscription.bicep) once the function exists.
param location string
param tags object = {}

@description('Custom topic acrsync publishes CloudEvents to (acrsync.site.synced, acrsync.site.stale, ...).')
param eventsTopicName string

@description('System topic on the registry.')
param systemTopicName string

@description('Resource id of the registry (the system topic source).')
param registryId string

@description('Region of the registry: a system topic must be in its source region.')
param registryLocation string

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: systemTopicName
  location: registryLocation
  tags: tags
  // Dead-letters to blob storage with this identity (Storage Blob Data Contributor, infra/app/rbac.bicep).
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: registryId
    topicType: 'Microsoft.ContainerRegistry.Registries'
  }
}

resource eventsTopic 'Microsoft.EventGrid/topics@2025-02-15' = {
  name: eventsTopicName
  location: location
  tags: tags
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    // Publishers authenticate with Entra ID (EventGrid Data Sender); no access keys.
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

output systemTopicName string = systemTopic.name
output systemTopicId string = systemTopic.id
output systemTopicPrincipalId string = systemTopic.identity.principalId
output eventsTopicName string = eventsTopic.name
output eventsTopicId string = eventsTopic.id
output eventsTopicEndpoint string = eventsTopic.properties.endpoint
