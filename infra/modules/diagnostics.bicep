// Resource logs and metrics of API Management, Azure OpenAI and Event Hubs to the Log Analytics
// workspace, so gateway errors, throttling, model calls and hub throttling can be queried next to the
// Function's telemetry. None of these logs carries a request or response body: APIM's gateway logs
// record bodies only if an API's azuremonitor diagnostic asks for them (none does here), and Azure
// OpenAI's RequestResponse category logs operation metadata, not prompts.
// https://learn.microsoft.com/azure/azure-monitor/essentials/diagnostic-settings
// https://learn.microsoft.com/azure/templates/microsoft.insights/diagnosticsettings
// Per service: https://learn.microsoft.com/azure/api-management/monitor-api-management
// https://learn.microsoft.com/azure/ai-foundry/openai/how-to/monitor-openai
// https://learn.microsoft.com/azure/event-hubs/monitor-event-hubs

@description('Resource id of the Log Analytics workspace.')
param workspaceId string

@description('Name of the API Management service.')
param apimName string

@description('Name of the Azure OpenAI account.')
param openAiAccountName string

@description('Name of the Event Hubs namespace.')
param eventHubNamespaceName string

resource apim 'Microsoft.ApiManagement/service@2024-05-01' existing = {
  name: apimName
}

resource openAi 'Microsoft.CognitiveServices/accounts@2025-06-01' existing = {
  name: openAiAccountName
}

resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespaceName
}

// Every log category the resource has (categoryGroup allLogs) and all platform metrics.
var everything = {
  workspaceId: workspaceId
  logs: [
    {
      categoryGroup: 'allLogs'
      enabled: true
    }
  ]
  metrics: [
    {
      category: 'AllMetrics'
      enabled: true
    }
  ]
}

resource apimDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: apim
  properties: everything
}

resource openAiDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: openAi
  properties: everything
}

resource eventHubDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: eventHubNamespace
  properties: everything
}
