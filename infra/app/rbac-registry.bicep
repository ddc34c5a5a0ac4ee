// Deployed into the registry's resource group (and subscription) by rbac.bicep, once per role the app
// identity needs on the registry (Reader for ARM, AcrPull for manifests). The role GUID comes from rbac.bicep's `roles` table, the only place role GUIDs are written.
param registryName string
param principalId string

@description('Role definition GUID (from the roles table of rbac.bicep); resolved in the registry subscription.')
param roleId string

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

resource registryReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, principalId, roleId)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
