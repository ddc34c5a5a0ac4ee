// The Function App on Flex Consumption (FC1), Python 3.11, running as a user-assigned identity.
// App settings are identity-based only: no connection strings, no keys (tests/unit/test_infra.py checks
// that every setting here is one the code reads, and that every setting the code reads is here).
param name string
param location string
param tags object = {}
param appServicePlanId string

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity (AZURE_CLIENT_ID and the __clientId settings).')
param identityClientId string

param storageAccountName string
param deploymentContainerName string

@description('Service Bus namespace host name, <ns>.servicebus.windows.net.')
param serviceBusFqdn string
param syncQueueName string

@description('Table Storage endpoint, https://<account>.table.core.windows.net.')
param tableEndpoint string

@description('Event Grid custom topic endpoint acrsync publishes to.')
param eventsTopicEndpoint string

@description('Login server of the parent registry, <name>.azurecr.io.')
param registryLoginServer string

param applicationInsightsConnectionString string

param maximumInstanceCount int = 100
param instanceMemoryMB int = 2048

@description('Put App Service Authentication (Microsoft Entra ID) in front of the app.')
param enableAppServiceAuth bool = false

@description('Client id of the Entra app registration whose app roles (Status.Read, Sync.Operate) callers hold.')
param authClientId string = ''

// Reached without a token: the host's Event Grid webhook (Event Grid authenticates with the system key), and
// the public health, API description and dashboard pages. Everything else needs a token for authClientId.
var anonymousPaths = [
  '/runtime/webhooks/eventgrid'
  '/api/healthz'
  '/api/openapi.json'
  '/api/docs'
  '/dashboard'
  '/dashboard/app.js'
  '/dashboard/app.css'
]

var blobEndpoint = 'https://${storageAccountName}.blob.${environment().suffixes.storage}/'
var queueEndpoint = 'https://${storageAccountName}.queue.${environment().suffixes.storage}/'

var appSettings = {
  // Functions host storage (timer locks, keys) through the identity.
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: blobEndpoint
  AzureWebJobsStorage__queueServiceUri: queueEndpoint
  // connection="ServiceBusConnection" in orchestrations/site_sync.py; the app's own sender reads the namespace too.
  ServiceBusConnection__fullyQualifiedNamespace: serviceBusFqdn
  ServiceBusConnection__credential: 'managedidentity'
  ServiceBusConnection__clientId: identityClientId
  // acrsync settings (shared/config.py)
  SYNC_TABLE_ENDPOINT: tableEndpoint
  SYNC_QUEUE: syncQueueName
  EVENTS_TOPIC_ENDPOINT: eventsTopicEndpoint
  AZURE_CLIENT_ID: identityClientId
  ACRSYNC_REGISTRY: registryLoginServer
  // With App Service Authentication in front, every state change needs the caller's Sync.Operate role.
  ACRSYNC_REQUIRE_ROLES: enableAppServiceAuth ? 'true' : 'false'
  // Application Insights with Entra ID ingestion (the resource has local auth off).
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

module site 'br/public:avm/res/web/site:0.15.1' = {
  name: 'function-app'
  params: {
    kind: 'functionapp,linux'
    name: name
    location: location
    tags: tags
    serverFarmResourceId: appServicePlanId
    httpsOnly: true
    managedIdentities: {
      systemAssigned: false
      userAssignedResourceIds: [
        identityId
      ]
    }
    // Key Vault references in app settings (e.g. ACRSYNC_SITE_CREDENTIALS, see README) resolve with this identity.
    keyVaultAccessIdentityResourceId: identityId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
    siteConfig: {
      alwaysOn: false
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    appSettingsKeyValuePairs: appSettings
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' existing = {
  name: name
}

// authsettingsV2: App Service sets WEBSITE_AUTH_ENABLED and X-MS-CLIENT-PRINCIPAL, which acrsync trusts only then.
resource authentication 'Microsoft.Web/sites/config@2024-04-01' = if (enableAppServiceAuth) {
  parent: app
  name: 'authsettingsV2'
  dependsOn: [
    site
  ]
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: anonymousPaths
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${authClientId}'
            authClientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

output name string = site.outputs.name
output resourceId string = site.outputs.resourceId
output defaultHostname string = site.outputs.defaultHostname
