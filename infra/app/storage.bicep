// Storage account: Functions host storage, the Flex deployment container, the Event Grid dead-letter
// container and the four acrsync tables. Shared keys are off: everything goes through Entra ID.
param name string
param location string
param tags object = {}

@description('The acrsync tables (<prefix>sites, <prefix>releases, <prefix>releaseindex, <prefix>siteindex).')
param tableNames array

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

// Created here rather than by the app (create_table_if_not_exists), so the app identity only needs data
// roles on these four tables (infra/app/rbac.bicep).
resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for table in tableNames: {
  name: '${name}/default/${table}'
  dependsOn: [
    account
  ]
}]

output name string = account.outputs.name
output resourceId string = account.outputs.resourceId
output blobEndpoint string = 'https://${name}.blob.${environment().suffixes.storage}/'
output queueEndpoint string = 'https://${name}.queue.${environment().suffixes.storage}/'
output tableEndpoint string = 'https://${name}.table.${environment().suffixes.storage}'
