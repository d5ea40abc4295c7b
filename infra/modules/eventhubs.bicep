// Event Hubs namespace and the usage hub the proxy sends usage records to, plus a consumer group
// for downstream readers. Keyless: SAS (local) auth is off, so senders and readers need the Azure
// Event Hubs Data Sender/Receiver roles (rbac.bicep).
// https://learn.microsoft.com/azure/event-hubs/authenticate-shared-access-signature#disable-local-or-sas-key-authentication

param namespaceName string
param location string
param tags object = {}
param hubName string
param consumerGroupName string

@description('Consumer group of the usage landing function (Event Hub -> Log Analytics); its own, so its checkpoints never move another reader\'s.')
param landingConsumerGroupName string

@minValue(1)
@maxValue(32)
@description('Partitions of the usage hub (fixed after creation on Standard).')
param partitionCount int

@minValue(1)
@maxValue(7)
@description('Days events are kept (Standard allows up to 7).')
param messageRetentionInDays int

@minValue(1)
@maxValue(20)
@description('Throughput units of the Standard namespace.')
param throughputUnits int = 1

// https://learn.microsoft.com/azure/templates/microsoft.eventhub/namespaces
// Tier comparison (Basic: one consumer group, 1-day retention): https://learn.microsoft.com/azure/event-hubs/event-hubs-quotas
resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: throughputUnits
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    isAutoInflateEnabled: false
    kafkaEnabled: true
  }
}

// https://learn.microsoft.com/azure/templates/microsoft.eventhub/namespaces/eventhubs
resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: hubName
  properties: {
    partitionCount: partitionCount
    messageRetentionInDays: messageRetentionInDays
  }
}

// https://learn.microsoft.com/azure/templates/microsoft.eventhub/namespaces/eventhubs/consumergroups
resource readers 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: hub
  name: consumerGroupName
  properties: {
    userMetadata: 'Downstream readers of usage records'
  }
}

// The landing function reads the hub through its own group: each consumer group keeps its own
// checkpoints, so re-landing (a new group, or reset checkpoints: docs/usage-analytics.md) touches nothing else.
// https://learn.microsoft.com/azure/event-hubs/event-hubs-features#consumer-groups
resource landing 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: hub
  name: landingConsumerGroupName
  properties: {
    userMetadata: 'Usage landing function: usage records and gateway events to Log Analytics'
  }
}

output namespaceId string = namespace.id
output namespaceName string = namespace.name
// serviceBusEndpoint is https://<namespace>.servicebus.windows.net:443/ ; the SDK wants the host
// only (no scheme, no port), which also keeps sovereign-cloud suffixes right.
output fullyQualifiedNamespace string = split(split(namespace.properties.serviceBusEndpoint, '/')[2], ':')[0]
output hubId string = hub.id
output hubName string = hub.name
output consumerGroupName string = readers.name
output landingConsumerGroupName string = landing.name
