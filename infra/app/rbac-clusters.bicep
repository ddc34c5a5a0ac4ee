// Deployed into the resource group that holds the sites' Arc connected clusters by rbac.bicep: Reader there
// lets the app identity read each cluster's connectivity, its connected registry extension and (resource
// context) its Container Insights logs. The role GUID comes from rbac.bicep's `roles` table.
param principalId string

@description('Role definition GUID (roles.reader in rbac.bicep); resolved in that subscription.')
param roleId string

resource clustersReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, roleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
