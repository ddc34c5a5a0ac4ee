// Storage account: Functions host storage, the Flex deployment container and the Event Grid dead-letter
// container (acrsync's tables have an account of their own, infra/app/state-storage.bicep). Shared keys are
// off: everything goes through Entra ID.
param name string
param location string
param tags object = {}

@description('Blob container Flex Consumption deploys the app package to.')
param deploymentContainerName string

@description('Blob container Event Grid dead-letters undeliverable registry events to.')
param deadLetterContainerName string

module account 'br/public:avm/res/storage/storage-account:0.8.3' = {
  name: 'storage-account'
  params: {
    name: name
    location: location
    tags: tags
    skuName: 'Standard_LRS'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    minimumTlsVersion: 'TLS1_2'
    dnsEndpointType: 'Standard'
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    blobServices: {
      containers: [
        {
          name: deploymentContainerName
        }
        {
          name: deadLetterContainerName
        }
      ]
    }
  }
}

output name string = account.outputs.name
output resourceId string = account.outputs.resourceId
output blobEndpoint string = 'https://${name}.blob.${environment().suffixes.storage}/'
output queueEndpoint string = 'https://${name}.queue.${environment().suffixes.storage}/'
