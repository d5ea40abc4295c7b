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

@description('Prices in USD per 1M tokens: model=input/cachedInput/output, comma-separated (gpt-5-mini=0.25/0.025/2.00,gpt-4.1=2/0.5/8); empty for infra/analytics/model-prices.txt.')
param modelPrices string = ''

// Prices are a deployment setting, not data: they become a KQL datatable inside the workbook's queries,
// so nothing extra is ingested. A model is named without its version date (Azure reports e.g.
// gpt-5-mini-2025-08-07; the queries strip the date). Plain text, not JSON, so the value survives
// `azd env set`, main.parameters.json substitution and pipeline variables without quoting. json()
// turns each price into a number (a typo fails the deployment instead of the workbook's queries);
// quotes and backslashes are removed from model names so they cannot break the KQL string or the
// workbook's JSON.
var priceEntries = split(trim(empty(modelPrices) ? loadTextContent('../analytics/model-prices.txt') : modelPrices), ',')
var backslash = '''\'''
// Loops, not map(): checkov's Bicep parser (pycep) cannot read lambdas.
var priceModels = [for entry in priceEntries: replace(replace(replace(trim(split(entry, '=')[0]), '\'', ''), '"', ''), backslash, '')]
var priceValues = [for entry in priceEntries: split(trim(split(entry, '=')[1]), '/')]
var priceRowList = [for (model, i) in priceModels: '\'${model}\', real(${json(priceValues[i][0])}), real(${json(priceValues[i][1])}), real(${json(priceValues[i][2])})']
var priceRows = join(priceRowList, ', ')

// __MODEL_PRICE_ROWS__: kql_check fills it with the defaults before it analyzes the queries.
// __WORKSPACE_ID__: the workbook's fallbackResourceIds, the resource its queries run against when it is
// opened with no resource in context (from its own link, USAGE_WORKBOOK_URL; the portal saves the
// workspace there too). Schema: https://github.com/microsoft/Application-Insights-Workbooks/blob/master/schema/workbook.json
var serializedData = replace(replace(loadTextContent('../analytics/workbook.json'), '__MODEL_PRICE_ROWS__', priceRows), '__WORKSPACE_ID__', workspaceId)

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
