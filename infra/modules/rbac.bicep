// Every role assignment of the template, in one place. Each role is a built-in role named by its
// definition GUID (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles); each
// assignment name is guid(scope, principal, role) so re-deploys are idempotent; principalType is set
// so ARM does not have to look the principal up (avoids failures right after the identity is created).
// https://learn.microsoft.com/azure/templates/microsoft.authorization/roleassignments

@description('Principal id of the Function App\'s user-assigned identity.')
param functionPrincipalId string

@description('Principal id of the user-assigned identity of API Management (its loggers).')
param apimPrincipalId string

@description('Object id of the person or pipeline running azd (AZURE_PRINCIPAL_ID); empty to skip.')
param deployerPrincipalId string = ''

@description('Type of the deploying principal: User locally, ServicePrincipal in a pipeline.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param deployerPrincipalType string = 'User'

param openAiAccountName string
param eventHubNamespaceName string
param eventHubName string
param storageAccountName string
param applicationInsightsName string
param dataCollectionRuleName string
param logAnalyticsWorkspaceName string

// Built-in role definition ids.
var roles = {
  // Cognitive Services OpenAI User: call inference APIs with an Entra ID token.
  openAiUser: '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'
  // Azure Event Hubs Data Sender: send events.
  eventHubsDataSender: '2b629674-e913-4c01-ae53-ef4638d8f975'
  // Azure Event Hubs Data Receiver: read events (smoke tests, downstream readers).
  eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
  // Storage Blob Data Owner: host storage, deployment package and dead-letter blobs.
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // Logs through a data collection rule (Logs Ingestion API), telemetry to App Insights with local auth off:
  // Monitoring Metrics Publisher.
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  // Log Analytics Reader: query the workspace (the smoke test checks that records landed).
  logAnalyticsReader: '73c42c96-874c-492b-b04d-ab87d138a893'
}

resource openAi 'Microsoft.CognitiveServices/accounts@2025-06-01' existing = {
  name: openAiAccountName
}

resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespaceName
}

resource eventHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' existing = {
  parent: eventHubNamespace
  name: eventHubName
}

resource storage 'Microsoft.Storage/storageAccounts@2025-01-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource dataCollectionRule 'Microsoft.Insights/dataCollectionRules@2024-03-11' existing = {
  name: dataCollectionRuleName
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2025-07-01' existing = {
  name: logAnalyticsWorkspaceName
}

// ---- The Function App's identity ----

resource functionOpenAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: openAi
  name: guid(openAi.id, functionPrincipalId, roles.openAiUser)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.openAiUser)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Scoped to the usage hub only, not the namespace: the identity can send nowhere else.
resource functionEventHubSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: eventHub
  name: guid(eventHub.id, functionPrincipalId, roles.eventHubsDataSender)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataSender)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource functionStorageBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, functionPrincipalId, roles.storageBlobDataOwner)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource functionMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: appInsights
  name: guid(appInsights.id, functionPrincipalId, roles.monitoringMetricsPublisher)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The usage landing function reads the hub through its Event Hubs trigger (identity-based connection
// EventHubConnection__*), scoped to the usage hub only.
// https://learn.microsoft.com/azure/azure-functions/functions-bindings-event-hubs-trigger#identity-based-connections
resource functionEventHubReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: eventHub
  name: guid(eventHub.id, functionPrincipalId, roles.eventHubsDataReceiver)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The landing function sends to Log Analytics through this DCR only. Like every role here it can take
// up to 30 minutes to apply after the first `azd up`: until then uploads fail with 403, the trigger's
// retry backs off, and the hub keeps the events for its retention (docs/usage-analytics.md).
// https://learn.microsoft.com/azure/azure-monitor/logs/logs-ingestion-api-overview#authentication
resource functionDcrMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: dataCollectionRule
  name: guid(dataCollectionRule.id, functionPrincipalId, roles.monitoringMetricsPublisher)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---- API Management's identity: its Event Hub and Application Insights loggers (docs/apim.md) ----

// Gateway events (log-to-eventhub) go to the usage hub only.
// https://learn.microsoft.com/azure/api-management/api-management-howto-log-event-hubs
resource apimEventHubSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: eventHub
  name: guid(eventHub.id, apimPrincipalId, roles.eventHubsDataSender)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataSender)
    principalId: apimPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Request telemetry with Entra ID auth (local auth is off on the component).
// https://learn.microsoft.com/azure/api-management/api-management-howto-app-insights
resource apimMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: appInsights
  name: guid(appInsights.id, apimPrincipalId, roles.monitoringMetricsPublisher)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: apimPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---- The deploying principal (optional): smoke tests and local runs against the real model ----

resource deployerOpenAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  scope: openAi
  name: guid(openAi.id, deployerPrincipalId, roles.openAiUser)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.openAiUser)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
  }
}

resource deployerEventHubReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  scope: eventHub
  name: guid(eventHub.id, deployerPrincipalId, roles.eventHubsDataReceiver)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
  }
}

// Query the usage tables (the smoke test waits for its records; the workbook needs read access too).
// https://learn.microsoft.com/azure/azure-monitor/logs/manage-access#log-analytics-reader
resource deployerLogAnalyticsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  scope: workspace
  name: guid(workspace.id, deployerPrincipalId, roles.logAnalyticsReader)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.logAnalyticsReader)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
  }
}
