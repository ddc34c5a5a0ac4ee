// Key Vault for site client tokens (connected registries accept only ACR tokens, not Entra ID).
// RBAC authorization: the app identity reads secrets with Key Vault Secrets User (infra/app/rbac.bicep).
param name string
param location string
param tags object = {}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
  }
}

output name string = vault.name
output resourceId string = vault.id
output uri string = vault.properties.vaultUri
