// Deployed into the Log Analytics workspace's resource group (and subscription) by rbac.bicep: the app
// identity reads the sites' Container Insights tables (Log Analytics Reader on the workspace, for
// workspace-context queries). The role GUID comes from rbac.bicep's `roles` table.
param workspaceName string
param principalId string

@description('Role definition GUID (roles.logAnalyticsReader in rbac.bicep); resolved in the workspace subscription.')
param roleId string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource workspaceReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, principalId, roleId)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
