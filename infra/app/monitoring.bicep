// Log Analytics + workspace-based Application Insights with local (key) auth off: ingestion needs Entra ID
// (APPLICATIONINSIGHTS_AUTHENTICATION_STRING and Monitoring Metrics Publisher for the app identity).
param logAnalyticsName string
param applicationInsightsName string
param location string
param tags object = {}

module logAnalytics 'br/public:avm/res/operational-insights/workspace:0.11.1' = {
  name: 'loganalytics'
  params: {
    name: logAnalyticsName
    location: location
    tags: tags
    dataRetention: 30
  }
}

module applicationInsights 'br/public:avm/res/insights/component:0.6.0' = {
  name: 'appinsights'
  params: {
    name: applicationInsightsName
    location: location
    tags: tags
    workspaceResourceId: logAnalytics.outputs.resourceId
    disableLocalAuth: true
  }
}

output name string = applicationInsights.outputs.name
output resourceId string = applicationInsights.outputs.resourceId
output connectionString string = applicationInsights.outputs.connectionString
output logAnalyticsId string = logAnalytics.outputs.resourceId
