// The storage account that holds acrsync's four tables and nothing else. Entity-group transactions go to the
// account-level /$batch URL, so the app's Storage Table Data Contributor is assigned at this account
// (infra/app/rbac.bicep): an account of its own keeps that grant to acrsync's state, away from the Functions
// host storage, the deployment package and the Event Grid dead letters. Shared keys are off.
param name string
param location string
param tags object = {}

@description('The acrsync tables (<prefix>sites, <prefix>releases, <prefix>releaseindex, <prefix>siteindex, <prefix>siteledger).')
param tableNames array

module account 'br/public:avm/res/storage/storage-account:0.8.3' = {
  name: 'state-storage-account'
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
  }
}

// Created here rather than by the app (create_table_if_not_exists): the app's role is a data role only.
resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for table in tableNames: {
  name: '${name}/default/${table}'
  dependsOn: [
    account
  ]
}]

output name string = account.outputs.name
output resourceId string = account.outputs.resourceId
output tableEndpoint string = 'https://${name}.table.${environment().suffixes.storage}'
