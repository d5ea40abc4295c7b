// The usage dashboard: an Azure Monitor workbook on the workspace, its content the file
// infra/analytics/workbook.json (edit it there, or in the portal and paste the Advanced Editor's JSON
// back). Every query in it is checked in CI against tables.json (tools/kql_check).
// Workbooks from templates: https://learn.microsoft.com/azure/azure-monitor/visualize/workbooks-automate
// https://learn.microsoft.com/azure/templates/microsoft.insights/workbooks

param location string
param tags object = {}

@description('Resource id of the Log Analytics workspace the workbook queries (its sourceId).')
param workspaceId string

@description('Name shown in the portal\'s workbook gallery.')
param displayName string

@description('Per-model prices in USD per 1M tokens, as JSON: [{"model", "input", "cachedInput", "output"}]; empty for infra/analytics/model-prices.json.')
param modelPricesJson string = ''

// Prices are a deployment setting, not data: they become a KQL datatable inside the workbook's queries,
// so nothing extra is ingested. model is the model name without its version date (Azure reports e.g.
// gpt-5-mini-2025-08-07; the queries strip the date). Numbers come through json() as numbers; quotes and
// backslashes are removed from names so they cannot break the KQL string or the workbook's JSON.
var prices = json(empty(modelPricesJson) ? loadTextContent('../analytics/model-prices.json') : modelPricesJson)
var backslash = '''\'''
// A loop, not map(): checkov's Bicep parser (pycep) cannot read lambdas.
var priceRowList = [for p in prices: '\'${replace(replace(replace(string(p.model), '\'', ''), '"', ''), backslash, '')}\', real(${p.input}), real(${p.cachedInput}), real(${p.output})']
var priceRows = join(priceRowList, ', ')

// The placeholder kql_check also fills (with the defaults) before it analyzes the queries.
var serializedData = replace(loadTextContent('../analytics/workbook.json'), '__MODEL_PRICE_ROWS__', priceRows)

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name must be a GUID; derived from the workspace so re-deploys update the same one.
  name: guid(workspaceId, 'aoai-usage-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    serializedData: serializedData
    // Shown under the workspace's Workbooks and queried against it by default.
    sourceId: workspaceId
    version: 'Notebook/1.0'
  }
}

output id string = workbook.id
output name string = workbook.name
