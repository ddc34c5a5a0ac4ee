// The acrsync workbook and the metric alerts. The workbook JSON (infra/workbook.json) carries placeholders
// for the resources its metric panels chart; they are filled in here.
param location string
param tags object = {}
param applicationInsightsId string
param serviceBusNamespaceId string
param syncQueueName string
param systemTopicId string
param eventsTopicId string

var workbookTemplate = loadTextContent('../workbook.json')
var workbookData = replace(replace(replace(replace(workbookTemplate, '__APPLICATION_INSIGHTS_ID__', applicationInsightsId), '__SERVICEBUS_NAMESPACE_ID__', serviceBusNamespaceId), '__SYSTEM_TOPIC_ID__', systemTopicId), '__EVENTS_TOPIC_ID__', eventsTopicId)

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'acrsync-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'acrsync: releases at edge sites'
    category: 'workbook'
    sourceId: applicationInsightsId
    serializedData: workbookData
    version: 'Notebook/1.0'
  }
}

// Jobs reached $deadletterqueue (max deliveries exceeded or TTL expired). site_sync_dead_letter drains it
// and marks the rows FAILED, so the gauge may be back at 0 soon: Maximum over the window catches the spike.
resource deadLetteredJobs 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'acrsync-jobs-deadlettered'
  location: 'global'
  tags: tags
  properties: {
    description: 'acrsync site-sync jobs were dead-lettered; their rows are FAILED (MAX_DELIVERIES_EXCEEDED). See the acrsync workbook.'
    severity: 2
    enabled: true
    scopes: [
      serviceBusNamespaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    targetResourceType: 'Microsoft.ServiceBus/namespaces'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'DeadletteredMessages'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                syncQueueName
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Maximum'
        }
      ]
    }
  }
}

// acrsync.sites.stale: an observable gauge the sweeper sets (shared/observability.py). Custom metrics exist
// only once the app has sent them, hence skipMetricValidation.
resource staleSites 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'acrsync-sites-stale'
  location: 'global'
  tags: tags
  properties: {
    description: 'At least one site is STALE: it missed its sync windows or went silent. See the acrsync workbook.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    targetResourceType: 'Microsoft.Insights/components'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'StaleSites'
          metricNamespace: 'azure.applicationinsights'
          metricName: 'acrsync.sites.stale'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Maximum'
          skipMetricValidation: true
        }
      ]
    }
  }
}

// Registry events Event Grid gave up on (30 attempts or 24 h) and wrote to the eg-deadletter container.
resource deadLetteredEvents 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'acrsync-registry-events-deadlettered'
  location: 'global'
  tags: tags
  properties: {
    description: 'Registry events could not be delivered to on_acr_event and were dead-lettered to the eg-deadletter container; those pushes have no release in acrsync.'
    severity: 1
    enabled: true
    scopes: [
      systemTopicId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    targetResourceType: 'Microsoft.EventGrid/systemTopics'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'DeadLetteredCount'
          metricNamespace: 'Microsoft.EventGrid/systemTopics'
          metricName: 'DeadLetteredCount'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Total'
        }
      ]
    }
  }
}

output workbookId string = workbook.id
