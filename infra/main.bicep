// The whole platform: azd provisions this at subscription scope (it creates the resource group), then
// deploys src/ to the Function App tagged azd-service-name: api. Consumers call API Management
// (docs/apim.md), which relays to the Function App.
// Credentials that exist (docs/deploy.md): every Azure service has local (key) auth off and is reached
// with a managed identity; no output carries a secret. API Management holds the only keys: consumers'
// subscription keys and, in key mode (apimFunctionAuth = 'key', the default), the Function's default
// host key in a secret named value. In Entra mode APIM calls the Function with its managed identity
// and no Function key is used.
// azd Bicep conventions: https://learn.microsoft.com/azure/developer/azure-developer-cli/make-azd-compatible
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; used in resource names and the azd-env-name tag.')
param environmentName string

// Regions that offer Flex Consumption, the API Management v2 tiers and Global Standard deployments of
// the default model. infra/availability.json keeps a dated snapshot of the three tables, and
// tests/infra/test_locations.py checks every region below against it:
// https://learn.microsoft.com/azure/azure-functions/flex-consumption-how-to#view-currently-supported-regions
// https://learn.microsoft.com/azure/api-management/api-management-region-availability
// https://learn.microsoft.com/azure/ai-foundry/openai/concepts/models#global-standard-model-availability
// Left out: northeurope (no Azure OpenAI there), westus3 (not in the v2 tiers' region table) and
// uksouth (new Basic v2 / Standard v2 instances flagged temporarily unavailable there).
@minLength(1)
@allowed([
  'australiaeast'
  'eastus'
  'eastus2'
  'francecentral'
  'germanywestcentral'
  'japaneast'
  'swedencentral'
  'westeurope'
])
@metadata({
  azd: {
    type: 'location'
  }
})
@description('Region of every resource except, optionally, Azure OpenAI.')
param location string

@description('Region of the Azure OpenAI account; defaults to location. Set it (azd env set AZURE_OPENAI_LOCATION ...) where the model or quota is elsewhere.')
param openAiLocation string = ''

@description('Object id of the principal running azd (AZURE_PRINCIPAL_ID); gets OpenAI User and Event Hubs Data Receiver for smoke tests. Empty to skip.')
param principalId string = ''

@description('User locally; ServicePrincipal when a pipeline runs azd (AZURE_PRINCIPAL_TYPE).')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param principalType string = 'User'

// ---- Function App ----
@description('Python version of the Function App (a version the Flex Consumption catalog lists; CI tests 3.11).')
@allowed([
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('Memory of each Flex Consumption instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound on instances the app scales out to.')
// The platform allows 1 to 1000: https://learn.microsoft.com/azure/azure-functions/event-driven-scaling#limit-scale-out
// ("the lowest maximum instance count value is 1"; older pages said 40).
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Concurrent HTTP requests per instance; every streamed response holds one for its whole length.')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int = 16

// ---- Azure OpenAI ----
@description('Deployment name callers use in /openai/deployments/<name>/ (and the v1 API "model").')
param openAiDeploymentName string = 'chat'

// Default: of the chat models Global Standard offers in every allowed location that a new subscription
// can still deploy (12 months from launch, https://learn.microsoft.com/azure/foundry/openai/concepts/model-retirements),
// the one that retires last: gpt-5.4-mini 2026-03-17, retirement 2027-09-21 (tied with gpt-5.4-nano,
// the narrower model), open to new customers until 2027-03-17, per
// https://learn.microsoft.com/azure/foundry/openai/concepts/model-retirement-schedule as snapshotted in
// infra/availability.json on 2026-12-06. gpt-5-mini 2025-08-07, the previous default, closed to new
// customers on 2026-08-07. tests/infra/test_locations.py fails once that date passes: choose a successor then.
@description('Model of the chat deployment.')
param openAiModelName string = 'gpt-5.4-mini'

@description('Model version of the chat deployment.')
param openAiModelVersion string = '2026-03-17'

@description('Deployment type: https://learn.microsoft.com/azure/ai-foundry/openai/how-to/deployment-types')
@allowed([
  'GlobalStandard'
  'DataZoneStandard'
  'Standard'
])
param openAiDeploymentSku string = 'GlobalStandard'

@description('Capacity in thousands of tokens per minute; lower it (azd env set AZURE_OPENAI_CAPACITY 5) when quota is short.')
@minValue(1)
param openAiDeploymentCapacity int = 10

// ---- Event Hubs ----
@description('Name of the usage hub.')
param eventHubName string = 'usage'

@description('Consumer group for downstream readers of usage records.')
param eventHubConsumerGroupName string = 'usage-readers'

@description('Consumer group the usage landing function reads the hub with.')
param eventHubLandingConsumerGroupName string = 'usage-landing'

@minValue(1)
@maxValue(32)
param eventHubPartitionCount int = 2

@minValue(1)
@maxValue(7)
param eventHubRetentionDays int = 7

// ---- API Management (docs/apim.md) ----
@description('APIM tier (azd env set APIM_SKU ...). Consumption is not offered: it cannot hold SSE streams open.')
@allowed([
  'BasicV2'
  'StandardV2'
  'Developer'
])
param apimSku string = 'BasicV2'

@description('APIM scale units: 1-10 on BasicV2 and StandardV2; Developer always runs 1 (apim.bicep).')
@minValue(1)
@maxValue(10)
param apimSkuCapacity int = 1

@description('APIM publisher name (developer portal, notifications).')
param apimPublisherName string = 'AOAI usage proxy'

@description('APIM publisher email: receives APIM system notifications (azd env set APIM_PUBLISHER_EMAIL ...).')
param apimPublisherEmail string = 'noreply@example.com'

@description('APIM subscription created for the first consumer; its key is fetched at run time, never output.')
param apimSubscriptionName string = 'first-consumer'

// ---- Usage analytics: Log Analytics tables, workbook and alerts (docs/usage-analytics.md) ----
@minValue(4)
@maxValue(730)
@description('Days usage records and gateway events stay queryable in Log Analytics (interactive retention).')
param usageRetentionDays int = 90

@minValue(4)
@maxValue(4383)
@description('Days they are kept in all, long-term retention included (at least usageRetentionDays).')
param usageTotalRetentionDays int = 365

@description('Prices in USD per 1M tokens for the workbook\'s cost estimates: model=input/cachedInput/output, comma-separated; empty for infra/analytics/model-prices.txt.')
param usageModelPrices string = ''

@description('E-mail address usage alerts go to; empty: alerts are only shown in the portal.')
param usageAlertEmail string = ''

@minValue(0)
@maxValue(100)
@description('Alert when more than this percent of a deployment\'s calls get 429 in 15 minutes.')
param usageAlertThrottledPercent int = 5

@minValue(0)
@maxValue(100)
@description('Alert when more than this percent of a deployment\'s calls fail (429 excluded) in 15 minutes.')
param usageAlertErrorPercent int = 10

@minValue(1)
@description('Calls a deployment needs in 15 minutes before its 429 and error rates are judged.')
param usageAlertMinCalls int = 20

@minValue(1)
@description('Alert when one APIM subscription uses more tokens than this in a UTC day.')
param usageAlertDailyTokens int = 10000000

@minValue(0)
@description('Alert when more gateway events than this (per hour) have no usage record; 0: on the first one.')
param usageAlertMissingRecords int = 0

// ---- How APIM authenticates to the Function (docs/deploy.md#function-authentication) ----
@description('key (default): the Function host key, in a secret APIM named value. entra: a managed identity token for an app registration, checked by App Service authentication and by the proxy; opt-in until a deployment proves streaming through it (azd env set APIM_FUNCTION_AUTH entra).')
@allowed([
  'key'
  'entra'
])
param apimFunctionAuth string = 'key'

@description('Key mode, set by the preprovision hook from what exists in Azure (APIM_FUNCTION_KEY_SYNC): read = code is deployed, read the host key into the named value; create = no named value yet, create it with a placeholder; keep = leave the named value untouched.')
@allowed([
  'keep'
  'create'
  'read'
])
param functionKeySync string = 'keep'

@description('Entra mode: random per-environment suffix of the app registration\'s uniqueName (ENTRA_APP_UNIQUE_SUFFIX, drawn by the preprovision hook).')
param entraAppUniqueSuffix string = ''

// ---- Storage ----
@description('Blob container for usage records that could not be sent yet (DEADLETTER_CONTAINER).')
@minLength(3)
@maxLength(63)
param deadLetterContainerName string = 'usage-deadletter'

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = '${abbrs.webSitesFunctions}api-${resourceToken}'
// Container names: 3-63 lowercase letters, digits and hyphens.
var deploymentContainerName = 'app-package-${take(resourceToken, 12)}'
var openAiAccountName = '${abbrs.cognitiveServicesAccounts}${resourceToken}'
var apimName = '${abbrs.apiManagementService}${resourceToken}'
var entraMode = apimFunctionAuth == 'entra'
var functionKeyNamedValueName = 'function-host-key'

// https://learn.microsoft.com/azure/templates/microsoft.resources/resourcegroups
resource rg 'Microsoft.Resources/resourceGroups@2025-04-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

// APIM's own identity, created before APIM so its roles (rbac.bicep) exist before the loggers do.
module apimIdentity 'modules/identity.bicep' = {
  name: 'apim-identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}apim-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
  }
}

module openAi 'modules/openai.bicep' = {
  name: 'openai'
  scope: rg
  params: {
    name: openAiAccountName
    location: empty(openAiLocation) ? location : openAiLocation
    tags: tags
    customSubDomainName: openAiAccountName
    deploymentName: openAiDeploymentName
    modelName: openAiModelName
    modelVersion: openAiModelVersion
    deploymentSkuName: openAiDeploymentSku
    deploymentCapacity: openAiDeploymentCapacity
  }
}

module eventHubs 'modules/eventhubs.bicep' = {
  name: 'eventhubs'
  scope: rg
  params: {
    namespaceName: '${abbrs.eventHubNamespaces}${resourceToken}'
    location: location
    tags: tags
    hubName: eventHubName
    consumerGroupName: eventHubConsumerGroupName
    landingConsumerGroupName: eventHubLandingConsumerGroupName
    partitionCount: eventHubPartitionCount
    messageRetentionInDays: eventHubRetentionDays
  }
}

// Usage records and gateway events land here (tables + data collection rule), read by the workbook
// and the alert rules below.
module analytics 'modules/analytics.bicep' = {
  name: 'analytics'
  scope: rg
  params: {
    workspaceName: monitoring.outputs.logAnalyticsWorkspaceName
    tags: tags
    dataCollectionRuleName: '${abbrs.insightsDataCollectionRules}usage-${resourceToken}'
    interactiveRetentionInDays: usageRetentionDays
    totalRetentionInDays: usageTotalRetentionDays
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    workspaceId: monitoring.outputs.logAnalyticsWorkspaceId
    displayName: 'Azure OpenAI usage (${environmentName})'
    modelPrices: usageModelPrices
  }
  // Its queries name the tables: create them first so the workbook opens without errors.
  dependsOn: [
    analytics
  ]
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    workspaceId: monitoring.outputs.logAnalyticsWorkspaceId
    namePrefix: 'alert-${resourceToken}'
    alertEmail: usageAlertEmail
    throttledPercentThreshold: usageAlertThrottledPercent
    errorPercentThreshold: usageAlertErrorPercent
    minCalls: usageAlertMinCalls
    dailyTokensPerSubscriptionThreshold: usageAlertDailyTokens
    missingUsageRecordsThreshold: usageAlertMissingRecords
  }
  // Its queries name the tables: create them first.
  dependsOn: [
    analytics
  ]
}

// Entra mode: the Function API's app registration (Microsoft Graph; lives outside the resource group,
// removed by the postdown hook).
module entraApp 'modules/entra-app.bicep' = if (entraMode) {
  name: 'entra-app'
  scope: rg
  params: {
    uniqueName: 'aoai-usage-proxy-${environmentName}-${entraAppUniqueSuffix}'
    displayName: 'AOAI usage proxy (${environmentName})'
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    planName: '${abbrs.webServerFarms}${resourceToken}'
    appName: functionAppName
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    deadLetterContainerName: storage.outputs.deadLetterContainerName
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    openAiEndpoint: openAi.outputs.endpoint
    openAiDeploymentName: openAi.outputs.deploymentName
    eventHubFullyQualifiedNamespace: eventHubs.outputs.fullyQualifiedNamespace
    eventHubName: eventHubs.outputs.hubName
    landingConsumerGroupName: eventHubs.outputs.landingConsumerGroupName
    logsIngestionEndpoint: analytics.outputs.logsIngestionEndpoint
    dataCollectionRuleImmutableId: analytics.outputs.dataCollectionRuleImmutableId
    usageStreamName: analytics.outputs.usageStreamName
    gatewayStreamName: analytics.outputs.gatewayStreamName
    pythonVersion: pythonVersion
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
    inboundAuth: apimFunctionAuth
    entraAppId: entraMode ? entraApp.outputs.appId : ''
    allowedCallerClientId: entraMode ? apimIdentity.outputs.clientId : ''
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    functionPrincipalId: identity.outputs.principalId
    apimPrincipalId: apimIdentity.outputs.principalId
    deployerPrincipalId: principalId
    deployerPrincipalType: principalType
    openAiAccountName: openAi.outputs.name
    eventHubNamespaceName: eventHubs.outputs.namespaceName
    eventHubName: eventHubs.outputs.hubName
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    dataCollectionRuleName: analytics.outputs.dataCollectionRuleName
    logAnalyticsWorkspaceName: monitoring.outputs.logAnalyticsWorkspaceName
  }
}

// The service alone: the slow part (minutes on v2 tiers, up to 75 on Developer) starts in parallel
// with the rest of the platform.
module apim 'modules/apim.bicep' = {
  name: 'apim'
  scope: rg
  params: {
    name: apimName
    location: location
    tags: tags
    skuName: apimSku
    skuCapacity: apimSkuCapacity
    publisherName: apimPublisherName
    publisherEmail: apimPublisherEmail
    identityId: apimIdentity.outputs.id
  }
}

// Resource logs and metrics of APIM, Azure OpenAI and Event Hubs to the workspace.
module diagnostics 'modules/diagnostics.bicep' = {
  name: 'diagnostics'
  scope: rg
  params: {
    workspaceId: monitoring.outputs.logAnalyticsWorkspaceId
    apimName: apim.outputs.name
    openAiAccountName: openAi.outputs.name
    eventHubNamespaceName: eventHubs.outputs.namespaceName
  }
}

// Key mode, once code is deployed (APIM_FUNCTION_KEY_SYNC=read): the named value from the app's host key,
// read inside the module so the key never crosses a module boundary.
module apimFunctionKey 'modules/apim-function-key.bicep' = if (!entraMode && functionKeySync == 'read') {
  name: 'apim-function-key'
  scope: rg
  params: {
    apimName: apim.outputs.name
    functionAppName: functionApp.outputs.name
    namedValueName: functionKeyNamedValueName
  }
}

// The API, loggers, backend and subscription: after rbac, so the loggers' identity can already send.
module apimApi 'modules/apim-api.bicep' = {
  name: 'apim-api'
  scope: rg
  params: {
    apimName: apim.outputs.name
    identityClientId: apimIdentity.outputs.clientId
    functionAppHostName: functionApp.outputs.defaultHostName
    functionAppName: functionApp.outputs.name
    eventHubNamespaceHost: eventHubs.outputs.fullyQualifiedNamespace
    eventHubName: eventHubs.outputs.hubName
    appInsightsId: monitoring.outputs.applicationInsightsId
    appInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    subscriptionName: apimSubscriptionName
    functionAuth: apimFunctionAuth
    functionKeyNamedValueName: functionKeyNamedValueName
    createFunctionKeyPlaceholder: functionKeySync == 'create'
    entraAppId: entraMode ? entraApp.outputs.appId : ''
  }
  dependsOn: [
    rbac
    apimFunctionKey
  ]
}

// ---- Outputs: azd writes them into .azure/<env>/.env. Names match docs/configuration.md. ----
// Never AZURE_CLIENT_ID: in the azd environment that name belongs to the pipeline's service principal
// and to DefaultAzureCredential; the Function's own setting is set in functionapp.bicep.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name

output AZURE_OPENAI_ENDPOINT string = openAi.outputs.endpoint
output AZURE_OPENAI_DEPLOYMENT string = openAi.outputs.deploymentName
output AZURE_OPENAI_ACCOUNT_NAME string = openAi.outputs.name

output EVENTHUB_FULLY_QUALIFIED_NAMESPACE string = eventHubs.outputs.fullyQualifiedNamespace
output EVENTHUB_NAME string = eventHubs.outputs.hubName
output EVENTHUB_NAMESPACE_NAME string = eventHubs.outputs.namespaceName
output EVENTHUB_CONSUMER_GROUP string = eventHubs.outputs.consumerGroupName

output AZURE_FUNCTION_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = functionApp.outputs.uri
output AZURE_FUNCTION_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId

output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output DEADLETTER_CONTAINER string = storage.outputs.deadLetterContainerName
output AZURE_APPLICATION_INSIGHTS_NAME string = monitoring.outputs.applicationInsightsName

// API Management. Names only: the subscription key is fetched at run time (docs/apim.md), and the
// Function key lives only in APIM's secret named value, set by the postdeploy hook.
output APIM_NAME string = apim.outputs.name
output APIM_GATEWAY_URL string = apim.outputs.gatewayUrl
output APIM_API_PATH string = apimApi.outputs.apiPath
output APIM_PRODUCT_NAME string = apimApi.outputs.productName
output APIM_SUBSCRIPTION_NAME string = apimApi.outputs.subscriptionName
output APIM_FUNCTION_KEY_NAMED_VALUE string = apimApi.outputs.functionKeyNamedValueName
output APIM_IDENTITY_CLIENT_ID string = apimIdentity.outputs.clientId

// Usage analytics (docs/usage-analytics.md). The workspace's customer id is what query clients address
// (scripts/smoke_test.py); the DCR values let a local run of the landing function send to Azure.
output LOG_ANALYTICS_WORKSPACE_CUSTOMER_ID string = monitoring.outputs.logAnalyticsWorkspaceCustomerId
output LOG_ANALYTICS_WORKSPACE_NAME string = monitoring.outputs.logAnalyticsWorkspaceName
output USAGE_LANDING_CONSUMER_GROUP string = eventHubs.outputs.landingConsumerGroupName
output LOGS_INGESTION_ENDPOINT string = analytics.outputs.logsIngestionEndpoint
output LOGS_DCR_IMMUTABLE_ID string = analytics.outputs.dataCollectionRuleImmutableId
output LOGS_USAGE_STREAM string = analytics.outputs.usageStreamName
output LOGS_GATEWAY_STREAM string = analytics.outputs.gatewayStreamName
// The portal of the cloud deployed to (environment().portal: https://portal.azure.com in Azure public).
// https://learn.microsoft.com/azure/azure-resource-manager/bicep/bicep-functions-deployment#environment
output USAGE_WORKBOOK_URL string = '${environment().portal}/#@${tenant().tenantId}/resource${workbook.outputs.id}/workbook'
// Entra mode: the app registration (ids, not secrets); the postdown hook deletes it by object id.
output ENTRA_APP_ID string = entraMode ? entraApp.outputs.appId : ''
output ENTRA_APP_OBJECT_ID string = entraMode ? entraApp.outputs.objectId : ''
