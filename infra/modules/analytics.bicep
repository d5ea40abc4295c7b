// Where usage records and gateway events land for good: two custom tables in the workspace and the
// data collection rule the landing function sends them through (Logs Ingestion API, keyless).
// The columns come from infra/analytics/tables.json, which the Python landing code and its tests read
// too, so the tables, the DCR's stream declarations and the flattened records cannot drift apart.
// Overview: https://learn.microsoft.com/azure/azure-monitor/logs/logs-ingestion-api-overview
// Tutorial (tables + DCR from a template): https://learn.microsoft.com/azure/azure-monitor/logs/tutorial-logs-ingestion-api

param workspaceName string
param tags object = {}

@description('Name of the data collection rule.')
param dataCollectionRuleName string

// Analytics plan retention: interactive (queryable at no extra charge up to 31 days) between 4 and 730
// days; total (interactive + long-term) up to 4383 days (12 years).
// https://learn.microsoft.com/azure/azure-monitor/logs/data-retention-configure
@minValue(4)
@maxValue(730)
@description('Days the usage tables stay queryable (interactive retention, Analytics plan).')
param interactiveRetentionInDays int

@minValue(4)
@maxValue(4383)
@description('Days the usage tables keep data in all (interactive + long-term retention); raised to the interactive days when lower.')
param totalRetentionInDays int

var schema = loadJsonContent('../analytics/tables.json')
var streams = [
  schema.usage
  schema.gateway
]
// A DCR stream declares its columns with DCR types: table types (dateTime, guid, ...) mapped through
// tables.json's dcrTypes (datetime, string, ...). Loops rather than lambdas: checkov's Bicep parser
// (pycep) cannot read lambdas and would skip the file.
var usageStreamColumns = [for c in schema.usage.columns: {
  name: c.name
  type: schema.dcrTypes[c.type]
}]
var gatewayStreamColumns = [for c in schema.gateway.columns: {
  name: c.name
  type: schema.dcrTypes[c.type]
}]

resource workspace 'Microsoft.OperationalInsights/workspaces@2025-07-01' existing = {
  name: workspaceName
}

// https://learn.microsoft.com/azure/templates/microsoft.operationalinsights/workspaces/tables
// Custom tables end in _CL and need a TimeGenerated column; Analytics plan for queries, alerts and
// workbooks (Basic/Auxiliary cannot back scheduled query rules at a 5-minute frequency).
// https://learn.microsoft.com/azure/azure-monitor/logs/logs-table-plans
// Schema of a custom table: https://learn.microsoft.com/azure/azure-monitor/logs/create-custom-table
resource tables 'Microsoft.OperationalInsights/workspaces/tables@2025-07-01' = [for s in streams: {
  parent: workspace
  name: s.table
  properties: {
    plan: 'Analytics'
    retentionInDays: interactiveRetentionInDays
    totalRetentionInDays: max(totalRetentionInDays, interactiveRetentionInDays)
    schema: {
      name: s.table
      description: s.description
      // name, type (a table type) and description of each column, as tables.json lists them.
      columns: s.columns
    }
  }
}]

// https://learn.microsoft.com/azure/templates/microsoft.insights/datacollectionrules
// kind 'Direct': the DCR gets its own logs ingestion endpoint (properties.endpoints.logsIngestion), so
// no data collection endpoint is needed unless private link is used (DCRs created since 2024-03-31).
// https://learn.microsoft.com/azure/azure-monitor/essentials/data-collection-rule-structure#endpoints
// Streams sent by the client are Custom-<Table without _CL>; each flows unchanged (transformKql
// 'source': the landing code already flattens and types every field) into Custom-<Table>_CL.
// outputStream names the table resource, so Bicep deploys the DCR after the tables exist
// (a DCR pointing at a table that is not there yet fails with InvalidOutputTable).
resource dcr 'Microsoft.Insights/dataCollectionRules@2024-03-11' = {
  name: dataCollectionRuleName
  // The DCR, its workspace and the tables must be in one region (Logs Ingestion API components).
  // https://learn.microsoft.com/azure/azure-monitor/logs/logs-ingestion-api-overview
  location: workspace.location
  tags: tags
  kind: 'Direct'
  properties: {
    description: 'Usage records and API Management gateway events landed by the Function App (Logs Ingestion API).'
    streamDeclarations: {
      '${schema.usage.stream}': {
        columns: usageStreamColumns
      }
      '${schema.gateway.stream}': {
        columns: gatewayStreamColumns
      }
    }
    destinations: {
      logAnalytics: [
        {
          name: 'workspace'
          workspaceResourceId: workspace.id
        }
      ]
    }
    dataFlows: [for (s, i) in streams: {
      streams: [
        s.stream
      ]
      destinations: [
        'workspace'
      ]
      transformKql: 'source'
      outputStream: 'Custom-${tables[i].name}'
    }]
  }
}

output dataCollectionRuleName string = dcr.name
output dataCollectionRuleId string = dcr.id
// What LogsIngestionClient needs: the endpoint, the DCR's immutable id and a stream name per table.
output logsIngestionEndpoint string = dcr.properties.endpoints.logsIngestion
output dataCollectionRuleImmutableId string = dcr.properties.immutableId
output usageStreamName string = schema.usage.stream
output gatewayStreamName string = schema.gateway.stream
output usageTableName string = tables[0].name
output gatewayTableName string = tables[1].name
