// Log Analytics workspace + workspace-based Application Insights, both with local (key) auth off:
// the Function reports with Entra ID (APPLICATIONINSIGHTS_AUTHENTICATION_STRING) and needs the
// Monitoring Metrics Publisher role (granted in rbac.bicep).
// https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication

param logAnalyticsName string
param applicationInsightsName string
param location string
param tags object = {}

@minValue(30)
@maxValue(730)
@description('Days Log Analytics keeps data (30 is included in the price).')
param retentionInDays int = 30

// https://learn.microsoft.com/azure/templates/microsoft.operationalinsights/workspaces
resource workspace 'Microsoft.OperationalInsights/workspaces@2025-07-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      // Shared-key ingestion and queries off: only Entra ID callers (the App Insights component and
      // people with Azure RBAC roles) reach the workspace.
      disableLocalAuth: true
    }
  }
}

// https://learn.microsoft.com/azure/templates/microsoft.insights/components
resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    // Capital D: the property is spelled DisableLocalAuth on this type. With it, the instrumentation
    // key in the connection string cannot be used to ingest telemetry on its own.
    // https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication#disable-local-authentication
    DisableLocalAuth: true
    IngestionMode: 'LogAnalytics'
  }
}

output logAnalyticsWorkspaceId string = workspace.id
output logAnalyticsWorkspaceName string = workspace.name
// The workspace (customer) id that query clients (azure-monitor-query, the smoke test) address.
output logAnalyticsWorkspaceCustomerId string = workspace.properties.customerId
output applicationInsightsId string = appInsights.id
output applicationInsightsName string = appInsights.name
// The connection string carries the instrumentation key, which is an identifier, not a credential:
// with DisableLocalAuth it cannot ingest without an Entra token.
output applicationInsightsConnectionString string = appInsights.properties.ConnectionString
