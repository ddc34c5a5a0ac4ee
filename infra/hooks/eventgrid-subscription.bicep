// The subscription from the registry's system topic to the Event Grid trigger `on_acr_event`.
// Deployed by the postdeploy hook (scripts/postdeploy.sh, scripts/postdeploy.ps1) with
// `az deployment group create`, because an AzureFunction destination must already exist (code deployed and
// indexed) or the deployment fails with "Destination endpoint not found". Event Grid fetches and rotates the
// function's eventgrid_extension key itself: no key passes through here.
param systemTopicName string
param functionAppName string
param storageAccountName string

@description('Blob container for events Event Grid gives up on.')
param deadLetterContainerName string = 'eg-deadletter'

@description('The Event Grid trigger (orchestrations/acr_events.py).')
param functionName string = 'on_acr_event'

param eventSubscriptionName string = 'acrsync-on-acr-event'

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource acrEvents 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: systemTopic
  name: eventSubscriptionName
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.id}/functions/${functionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      // Pushes and deletions of the parent registry, and the edge events its connected registries raise
      // on the same topic (ImagePushed with a /connectedRegistries/<name> topic).
      includedEventTypes: [
        'Microsoft.ContainerRegistry.ImagePushed'
        'Microsoft.ContainerRegistry.ImageDeleted'
        'Microsoft.ContainerRegistry.ChartPushed'
        'Microsoft.ContainerRegistry.ChartDeleted'
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    // The system topic's own identity writes dead letters (Storage Blob Data Contributor, infra/app/rbac.bicep).
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storage.id
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output eventSubscriptionName string = acrEvents.name
