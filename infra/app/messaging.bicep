// Service Bus namespace and the jobs queue `site-sync` (one message = one check of one release at one site).
// Sessions and duplicate detection cannot be changed after creation: changing them means a new queue.
param name string
param location string
param tags object = {}

@allowed([
  'Standard'
  'Premium'
])
param sku string = 'Standard'

@description('The jobs queue; the app reads its name from the SYNC_QUEUE setting.')
param queueName string

resource serviceBus 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: (sku == 'Premium') ? { name: 'Premium', tier: 'Premium', capacity: 1 } : { name: 'Standard', tier: 'Standard' }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource syncQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: serviceBus
  name: queueName
  properties: {
    // session id = site: jobs of one site run one at a time, in order
    requiresSession: true
    // deterministic message ids (release:site:kind:check): re-sends after a crash are dropped
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    // a site check takes seconds; the Functions host renews the lock for longer work
    lockDuration: 'PT1M'
    // then the message goes to $deadletterqueue, where site_sync_dead_letter marks the row FAILED
    maxDeliveryCount: 10
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
    enablePartitioning: false
  }
}

output name string = serviceBus.name
output resourceId string = serviceBus.id
// https://<ns>.servicebus.windows.net:443/ -> <ns>.servicebus.windows.net (any cloud)
output fqdn string = split(split(serviceBus.properties.serviceBusEndpoint, '//')[1], ':')[0]
output queueName string = syncQueue.name
