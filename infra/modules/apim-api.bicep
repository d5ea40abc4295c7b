// The "openai" API on an existing APIM service: loggers (Event Hubs and Application Insights, both with
// APIM's user-assigned identity), the Function App backend, the API and its operations, the SSE-safe
// policy, API diagnostics without bodies, a product and the first consumer's subscription.
// How APIM authenticates to the Function (docs/deploy.md#function-authentication):
//   key   (default) the backend sends the Function's host key as x-functions-key from the secret named
//         value `function-host-key` (written by apim-function-key.bicep or the postdeploy hook)
//   entra the policy gets a token for the API's app registration with APIM's managed identity
//         (authentication-managed-identity); no key exists anywhere
// Walk-through: docs/apim.md. Every type is Microsoft.ApiManagement 2024-05-01 (newest GA):
// https://learn.microsoft.com/azure/templates/microsoft.apimanagement/2024-05-01/service/apis
// Deploy it only after the identity's roles exist (main.bicep: dependsOn rbac), so the loggers work from
// the first call.

@description('Name of the existing API Management service (apim.bicep).')
param apimName string

@description('Client id of the user-assigned identity of APIM: the loggers authenticate with it.')
param identityClientId string

@description('Default host name of the Function App, e.g. func-xyz.azurewebsites.net (no scheme).')
param functionAppHostName string

@description('Name of the Function App (shown on the backend entity).')
param functionAppName string

@description('Event Hubs namespace host, e.g. evhns-xyz.servicebus.windows.net (no scheme, no port).')
param eventHubNamespaceHost string

@description('The usage hub: gateway events go to the same hub as the usage records of the Function.')
param eventHubName string

@description('Resource id of the Application Insights component.')
param appInsightsId string

@description('Connection string of the Application Insights component (it holds no key).')
param appInsightsConnectionString string

@description('Product that groups the APIs consumers subscribe to.')
param productName string = 'openai'

@description('Subscription (sid) created for the first consumer. Its key is never an output: see docs/apim.md.')
param subscriptionName string = 'first-consumer'

@description('How APIM authenticates to the Function: key (host key) or entra (managed identity token).')
@allowed([
  'key'
  'entra'
])
param functionAuth string = 'key'

@description('Name of the secret named value holding the Function host key (key mode).')
param functionKeyNamedValueName string = 'function-host-key'

@description('Key mode: create the named value with a placeholder (only when the preprovision hook found none; APIM_FUNCTION_KEY_SYNC=create). Otherwise the named value is left as it is or written by apim-function-key.bicep.')
param createFunctionKeyPlaceholder bool = false

@description('Entra mode: application (client) id of the Function API\'s app registration (entra-app.bicep).')
param entraAppId string = ''

// Names the policy XML files refer to: keep them in step (tests/infra/test_apim_policies.py checks it).
var eventHubLoggerName = 'usage-eventhub'
var appInsightsLoggerName = 'appinsights'
var backendName = 'function-app'
var originBackendName = 'function-app-origin'
var gatewayEventFragmentName = 'gateway-event'
var keyMode = functionAuth == 'key'

resource apim 'Microsoft.ApiManagement/service@2024-05-01' existing = {
  name: apimName
}

// Event Hub logger with managed identity: credentials name/endpointAddress/identityClientId, no connection
// string. APIM's identity holds Azure Event Hubs Data Sender on the hub (rbac.bicep).
// https://learn.microsoft.com/azure/api-management/api-management-howto-log-event-hubs
// https://learn.microsoft.com/azure/templates/microsoft.apimanagement/2024-05-01/service/loggers
resource eventHubLogger 'Microsoft.ApiManagement/service/loggers@2024-05-01' = {
  parent: apim
  name: eventHubLoggerName
  properties: {
    loggerType: 'azureEventHub'
    description: 'Gateway events (log-to-eventhub) to the usage hub, with the managed identity of APIM'
    credentials: {
      name: eventHubName
      endpointAddress: eventHubNamespaceHost
      identityClientId: identityClientId
    }
  }
}

// Application Insights logger with managed identity: the component's connection string (no key in it)
// plus identityClientId; the identity holds Monitoring Metrics Publisher on the component (local auth is
// off there). https://learn.microsoft.com/azure/api-management/api-management-howto-app-insights
resource appInsightsLogger 'Microsoft.ApiManagement/service/loggers@2024-05-01' = {
  parent: apim
  name: appInsightsLoggerName
  properties: {
    loggerType: 'applicationInsights'
    description: 'Request telemetry with the managed identity of APIM (Entra ID auth)'
    resourceId: appInsightsId
    credentials: {
      connectionString: appInsightsConnectionString
      identityClientId: identityClientId
    }
  }
}

// Key mode, first provision only: the Function's host key cannot be read before code is deployed
// (bicep-types-az#1356, azure-functions-host#11379), so the named value starts with a placeholder and the
// postdeploy hook writes the key minutes later, before any consumer could call. It is created only when
// the preprovision hook found no such named value: a placeholder never replaces a working key.
// Secret named values are never shown in outputs or the portal in clear text.
// https://learn.microsoft.com/azure/api-management/api-management-howto-properties
// https://learn.microsoft.com/azure/templates/microsoft.apimanagement/2024-05-01/service/namedvalues
resource functionKeyPlaceholder 'Microsoft.ApiManagement/service/namedValues@2024-05-01' = if (keyMode && createFunctionKeyPlaceholder) {
  parent: apim
  name: functionKeyNamedValueName
  properties: {
    displayName: functionKeyNamedValueName
    secret: true
    value: 'placeholder-replaced-by-the-postdeploy-hook'
    tags: [
      'function-app'
    ]
  }
}

// Backend entity: the Function App over HTTPS with certificate checks; in key mode, the host key header.
// Named value references in backend credentials: pamelafox/fastapi-azure-function-apim infra/apimanagement.bicep.
// https://learn.microsoft.com/azure/api-management/backends
// https://learn.microsoft.com/azure/templates/microsoft.apimanagement/2024-05-01/service/backends
var hostKeyCredentials = {
  header: {
    'x-functions-key': [
      '{{${functionKeyNamedValueName}}}'
    ]
  }
}

resource backend 'Microsoft.ApiManagement/service/backends@2024-05-01' = {
  parent: apim
  name: backendName
  properties: {
    title: functionAppName
    description: 'Azure Functions usage proxy in front of Azure OpenAI'
    // The API path `openai` is stripped by APIM; the Function's routes start with openai/ again.
    url: 'https://${functionAppHostName}/openai'
    protocol: 'http'
    tls: {
      validateCertificateChain: true
      validateCertificateName: true
    }
    credentials: keyMode ? hostKeyCredentials : null
  }
  dependsOn: [
    functionKeyPlaceholder
  ]
}

// The origin's contract POST /api/aoaifn (aoai_proxy.routes.AOAIFN_ROUTE) lies outside the Function's
// /openai routes, so the `aoaifn` operation's policy sends it to this second entity: the same Function,
// credentials (the host key in key mode; in Entra mode the API policy's managed-identity token, which
// the operation policy inherits through <base />) and certificate checks, with the /api path as URL.
// https://learn.microsoft.com/azure/api-management/backends
resource originBackend 'Microsoft.ApiManagement/service/backends@2024-05-01' = {
  parent: apim
  name: originBackendName
  properties: {
    title: functionAppName
    description: 'The same Function App, for the origin contract POST /api/aoaifn'
    url: 'https://${functionAppHostName}/api'
    protocol: 'http'
    tls: {
      validateCertificateChain: true
      validateCertificateName: true
    }
    credentials: keyMode ? hostKeyCredentials : null
  }
  dependsOn: [
    functionKeyPlaceholder
  ]
}

// Reused by the API policy's outbound and on-error sections.
// https://learn.microsoft.com/azure/api-management/policy-fragments
// https://learn.microsoft.com/azure/templates/microsoft.apimanagement/2024-05-01/service/policyfragments
resource gatewayEventFragment 'Microsoft.ApiManagement/service/policyFragments@2024-05-01' = {
  parent: apim
  name: gatewayEventFragmentName
  properties: {
    description: 'One JSON gateway event per call to the usage hub; reads no body'
    format: 'rawxml'
    value: loadTextContent('apim-gateway-event-fragment.xml')
  }
  dependsOn: [
    eventHubLogger
  ]
}

// The API mirrors Azure OpenAI's URL space under /openai. The subscription key is read from the
// `api-key` header (or query), the header the openai SDK's AzureOpenAI client already sends
// (microsoft/aoai-logging-with-apim infra/apim/apimApis.bicep).
// https://learn.microsoft.com/azure/templates/microsoft.apimanagement/2024-05-01/service/apis
resource api 'Microsoft.ApiManagement/service/apis@2024-05-01' = {
  parent: apim
  name: 'openai'
  properties: {
    displayName: 'Azure OpenAI (usage-metered)'
    description: 'Azure OpenAI-compatible API; streamed and non-streamed calls, one usage record per call'
    path: 'openai'
    // The policy routes to the backend entity (with its key); this is only the API's documented URL.
    serviceUrl: 'https://${functionAppHostName}/openai'
    protocols: [
      'https'
    ]
    type: 'http'
    subscriptionRequired: true
    subscriptionKeyParameterNames: {
      header: 'api-key'
      query: 'api-key'
    }
  }
}

// Entra mode: a token for the API's app registration from APIM's user-assigned identity, sent as
// Authorization: Bearer after the policy has removed the caller's own Authorization header. The
// attributes take no policy expressions, so the values are written into the XML here.
// https://learn.microsoft.com/azure/api-management/authentication-managed-identity-policy
var managedIdentityAuthentication = '<authentication-managed-identity resource="${entraAppId}" client-id="${identityClientId}" />'
var backendAuthentication = keyMode ? '<!-- key mode: x-functions-key from the backend entity -->' : managedIdentityAuthentication

// https://learn.microsoft.com/azure/templates/microsoft.apimanagement/2024-05-01/service/apis/policies
resource apiPolicy 'Microsoft.ApiManagement/service/apis/policies@2024-05-01' = {
  parent: api
  name: 'policy'
  properties: {
    format: 'rawxml'
    value: replace(loadTextContent('apim-openai-api-policy.xml'), '<!-- backend-authentication -->', backendAuthentication)
  }
  dependsOn: [
    backend
    gatewayEventFragment
  ]
}

var deploymentParam = [
  {
    name: 'deployment-id'
    type: 'string'
    required: true
    description: 'Azure OpenAI deployment name'
  }
]

// Named operations give the gateway events and analytics readable names; the per-method `/*` wildcards
// relay everything else the Function serves (its catch-all openai/{*path}, and every method on the
// named routes). Per-method wildcards rather than method '*', which not every tier accepts.
// https://learn.microsoft.com/azure/templates/microsoft.apimanagement/2024-05-01/service/apis/operations
var namedOperations = [
  {
    name: 'chat-completions'
    displayName: 'Chat completions'
    method: 'POST'
    urlTemplate: '/deployments/{deployment-id}/chat/completions'
    templateParameters: deploymentParam
  }
  {
    name: 'completions'
    displayName: 'Completions'
    method: 'POST'
    urlTemplate: '/deployments/{deployment-id}/completions'
    templateParameters: deploymentParam
  }
  {
    name: 'embeddings'
    displayName: 'Embeddings'
    method: 'POST'
    urlTemplate: '/deployments/{deployment-id}/embeddings'
    templateParameters: deploymentParam
  }
  {
    name: 'v1-chat-completions'
    displayName: 'Chat completions (v1)'
    method: 'POST'
    urlTemplate: '/v1/chat/completions'
    templateParameters: []
  }
  {
    name: 'v1-completions'
    displayName: 'Completions (v1)'
    method: 'POST'
    urlTemplate: '/v1/completions'
    templateParameters: []
  }
  {
    name: 'v1-embeddings'
    displayName: 'Embeddings (v1)'
    method: 'POST'
    urlTemplate: '/v1/embeddings'
    templateParameters: []
  }
  {
    name: 'v1-responses'
    displayName: 'Responses (v1)'
    method: 'POST'
    urlTemplate: '/v1/responses'
    templateParameters: []
  }
  {
    name: 'responses'
    displayName: 'Responses'
    method: 'POST'
    urlTemplate: '/responses'
    templateParameters: []
  }
  {
    name: 'v1-models'
    displayName: 'List models (v1)'
    method: 'GET'
    urlTemplate: '/v1/models'
    templateParameters: []
  }
  {
    // The origin's POST /api/aoaifn, published as /openai/aoaifn: its policy below picks the backend.
    name: 'aoaifn'
    displayName: 'Chat completions (origin contract, /api/aoaifn)'
    method: 'POST'
    urlTemplate: '/aoaifn'
    templateParameters: []
  }
]

var wildcardMethods = [
  'GET'
  'POST'
  'PUT'
  'PATCH'
  'DELETE'
  'HEAD'
  'OPTIONS'
]

// One at a time: parallel writes to one API's operations can conflict.
@batchSize(1)
resource operations 'Microsoft.ApiManagement/service/apis/operations@2024-05-01' = [
  for op in namedOperations: {
    parent: api
    name: op.name
    properties: {
      displayName: op.displayName
      method: op.method
      urlTemplate: op.urlTemplate
      templateParameters: op.templateParameters
    }
  }
]

// The aoaifn operation's policy: the API policy (<base />: caller headers, gateway event, the unbuffered
// forward), then the origin backend instead of the /openai one.
// https://learn.microsoft.com/azure/templates/microsoft.apimanagement/2024-05-01/service/apis/operations/policies
resource aoaifnOperation 'Microsoft.ApiManagement/service/apis/operations@2024-05-01' existing = {
  parent: api
  name: 'aoaifn'
}

resource aoaifnPolicy 'Microsoft.ApiManagement/service/apis/operations/policies@2024-05-01' = {
  parent: aoaifnOperation
  name: 'policy'
  properties: {
    format: 'rawxml'
    value: loadTextContent('apim-aoaifn-operation-policy.xml')
  }
  dependsOn: [
    operations
    originBackend
    apiPolicy
  ]
}

// @batchSize serialises one loop only; two loops over the same API's operations still run side by side
// (https://learn.microsoft.com/azure/azure-resource-manager/bicep/loops#deploy-in-batches), so the
// wildcards wait for the whole named-operations loop.
@batchSize(1)
resource wildcardOperations 'Microsoft.ApiManagement/service/apis/operations@2024-05-01' = [
  for method in wildcardMethods: {
    parent: api
    name: 'passthrough-${toLower(method)}'
    properties: {
      displayName: 'Pass-through ${method}'
      method: method
      urlTemplate: '/*'
    }
    dependsOn: [
      operations
    ]
  }
]

// Request telemetry to Application Insights with zero body bytes and no headers logged: logging bodies
// buffers SSE responses (https://learn.microsoft.com/azure/api-management/how-to-server-sent-events) and
// would copy prompts. https://learn.microsoft.com/azure/api-management/api-management-howto-app-insights
// https://learn.microsoft.com/azure/templates/microsoft.apimanagement/2024-05-01/service/apis/diagnostics
var noBody = {
  headers: []
  body: {
    bytes: 0
  }
}

resource apiDiagnostics 'Microsoft.ApiManagement/service/apis/diagnostics@2024-05-01' = {
  parent: api
  name: 'applicationinsights'
  properties: {
    loggerId: appInsightsLogger.id
    alwaysLog: 'allErrors'
    verbosity: 'information'
    logClientIp: true
    httpCorrelationProtocol: 'W3C'
    metrics: true
    sampling: {
      samplingType: 'fixed'
      percentage: 100
    }
    frontend: {
      request: noBody
      response: noBody
    }
    backend: {
      request: noBody
      response: noBody
    }
  }
}

// A product groups APIs for consumers; add more products/subscriptions per team (docs/apim.md).
// https://learn.microsoft.com/azure/templates/microsoft.apimanagement/2024-05-01/service/products
resource product 'Microsoft.ApiManagement/service/products@2024-05-01' = {
  parent: apim
  name: productName
  properties: {
    displayName: 'Azure OpenAI'
    description: 'Usage-metered access to Azure OpenAI through the Functions proxy'
    subscriptionRequired: true
    approvalRequired: false
    state: 'published'
  }
}

// https://learn.microsoft.com/azure/templates/microsoft.apimanagement/2024-05-01/service/products/apis
resource productApi 'Microsoft.ApiManagement/service/products/apis@2024-05-01' = {
  parent: product
  name: api.name
}

// The first consumer's subscription, scoped to the product. Its key is fetched at run time with
// POST .../subscriptions/{sid}/listSecrets (scripts/smoke_test.py, docs/apim.md), never output here.
// https://learn.microsoft.com/azure/templates/microsoft.apimanagement/2024-05-01/service/subscriptions
// https://learn.microsoft.com/rest/api/apimanagement/current-ga/subscription/create-or-update
resource firstSubscription 'Microsoft.ApiManagement/service/subscriptions@2024-05-01' = {
  parent: apim
  name: subscriptionName
  properties: {
    displayName: subscriptionName
    scope: '/products/${product.name}'
    state: 'active'
    allowTracing: false
  }
  dependsOn: [
    productApi
  ]
}

output apiPath string = api.properties.path
output productName string = product.name
output subscriptionName string = firstSubscription.name
// Names only (the hook and the smoke test look these up); the key itself is never an output.
output functionKeyNamedValueName string = keyMode ? functionKeyNamedValueName : ''

output eventHubLoggerName string = eventHubLogger.name
