// Flex Consumption plan and the Function App that runs src/ (the proxy and the dead-letter replay
// timer). Everything it reaches, it reaches with its user-assigned identity: deployment package,
// host storage, Azure OpenAI, Event Hubs, dead-letter blobs and Application Insights.
// Flex Consumption in Bicep: https://learn.microsoft.com/azure/azure-functions/functions-infrastructure-as-code?pivots=flex-consumption-plan
// Plan limits (instance memory, maximum instances, HTTP concurrency): https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan

param planName string
param appName string
param location string
param tags object = {}

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string
@description('Client id of that identity (AZURE_CLIENT_ID, AzureWebJobsStorage__clientId).')
param identityClientId string

param storageBlobEndpoint string
param deploymentContainerName string
param deadLetterContainerName string

param applicationInsightsConnectionString string

param openAiEndpoint string
@description('The chat deployment that the origin contract POST /api/aoaifn sends its calls to (AZURE_OPENAI_DEPLOYMENT).')
param openAiDeploymentName string
param eventHubFullyQualifiedNamespace string
param eventHubName string

// Usage landing (Event Hub -> Log Analytics through the Logs Ingestion API; docs/usage-analytics.md).
@description('Consumer group the landing function\'s Event Hubs trigger reads with.')
param landingConsumerGroupName string
@description('Logs ingestion endpoint of the data collection rule (kind Direct).')
param logsIngestionEndpoint string
@description('Immutable id of the data collection rule.')
param dataCollectionRuleImmutableId string
param usageStreamName string
param gatewayStreamName string

// Python versions the Flex Consumption catalog lists: https://learn.microsoft.com/azure/azure-functions/supported-languages
@allowed([
  '3.11'
  '3.12'
])
param pythonVersion string

// Flex Consumption instance sizes: https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#instance-memory
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

// The platform allows 1 to 1000: https://learn.microsoft.com/azure/azure-functions/event-driven-scaling#limit-scale-out
// ("the lowest maximum instance count value is 1"; older pages said 40).
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int

// Every SSE stream holds one slot for its whole length (see docs/deploy.md).
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int

@description('How callers (APIM) authenticate: key (Functions host key; the proxy routes are at auth level FUNCTION) or entra (App Service built-in authentication validates an Entra ID token; the routes are anonymous at the Functions level and the proxy checks the caller, fail-closed).')
@allowed([
  'key'
  'entra'
])
param inboundAuth string = 'key'

@description('Entra mode: application (client) id of the API\'s app registration: the token audience.')
param entraAppId string = ''

@description('Entra mode: client id of the only application allowed to call, APIM\'s user-assigned identity.')
param allowedCallerClientId string = ''

// https://learn.microsoft.com/azure/templates/microsoft.web/serverfarms
resource plan 'Microsoft.Web/serverfarms@2025-03-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    // Linux plan (Flex Consumption runs on Linux only).
    reserved: true
  }
}

// https://learn.microsoft.com/azure/templates/microsoft.web/sites
resource app 'Microsoft.Web/sites@2025-03-01' = {
  name: appName
  location: location
  // azd finds the resource to deploy the 'api' service of azure.yaml to by this tag.
  // https://learn.microsoft.com/azure/developer/azure-developer-cli/azd-schema
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    functionAppConfig: {
      // The package azd uploads goes to this container, read by the platform with the identity
      // (no storage key): https://learn.microsoft.com/azure/azure-functions/flex-consumption-how-to#configure-deployment-settings
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        // https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#concurrency
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// Every name here is a row of docs/configuration.md (tests/infra checks it). No FUNCTIONS_WORKER_RUNTIME
// or FUNCTIONS_EXTENSION_VERSION: Flex Consumption rejects them (functionAppConfig.runtime replaces them).
// https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations
// https://learn.microsoft.com/azure/templates/microsoft.web/sites/config
resource appSettings 'Microsoft.Web/sites/config@2025-03-01' = {
  parent: app
  name: 'appsettings'
  properties: {
    // Identity-based host storage (no connection string):
    // https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    AzureWebJobsStorage__blobServiceUri: storageBlobEndpoint
    // Telemetry with Entra ID, since local auth is off on the component:
    // https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication#environment-variable-configuration
    APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
    // Needed by the azurefunctions-extensions-http-fastapi streaming types on Python 3.12 and below:
    // https://learn.microsoft.com/azure/azure-functions/functions-reference-python#http-streams
    PYTHON_ENABLE_INIT_INDEXING: '1'
    // DefaultAzureCredential picks the user-assigned identity by this client id.
    // https://learn.microsoft.com/python/api/azure-identity/azure.identity.defaultazurecredential
    AZURE_CLIENT_ID: identityClientId
    AZURE_OPENAI_ENDPOINT: openAiEndpoint
    AZURE_OPENAI_DEPLOYMENT: openAiDeploymentName
    EVENTHUB_FULLY_QUALIFIED_NAMESPACE: eventHubFullyQualifiedNamespace
    EVENTHUB_NAME: eventHubName
    DEADLETTER_CONTAINER: deadLetterContainerName
    // The landing function's Event Hubs trigger: identity-based connection with the user-assigned
    // identity (no connection string). https://learn.microsoft.com/azure/azure-functions/functions-reference#configure-an-identity-based-connection
    EventHubConnection__fullyQualifiedNamespace: eventHubFullyQualifiedNamespace
    EventHubConnection__credential: 'managedidentity'
    EventHubConnection__clientId: identityClientId
    USAGE_LANDING_CONSUMER_GROUP: landingConsumerGroupName
    // Where it sends: https://learn.microsoft.com/python/api/overview/azure/monitor-ingestion-readme
    LOGS_INGESTION_ENDPOINT: logsIngestionEndpoint
    LOGS_DCR_IMMUTABLE_ID: dataCollectionRuleImmutableId
    LOGS_USAGE_STREAM: usageStreamName
    LOGS_GATEWAY_STREAM: gatewayStreamName
    // The proxy's own, fail-closed check of the caller in Entra mode (src/aoai_proxy/caller.py).
    PROXY_INBOUND_AUTH: inboundAuth
    PROXY_ALLOWED_CALLER_CLIENT_ID: allowedCallerClientId
  }
}

// Entra mode: App Service built-in authentication ("Easy Auth") rejects, with 401, every call without a
// valid v2 token for the API's app registration issued to APIM's identity; /healthz stays open.
// Streaming through it on Flex Consumption is unproven (Azure/azure-functions-mcp-extension#273 reports
// 500 for text/event-stream POSTs): the mode is opt-in until scripts/smoke_test.py passes in Azure.
// https://learn.microsoft.com/azure/app-service/configure-authentication-provider-aad
// https://learn.microsoft.com/azure/app-service/configure-authentication-api-version (authsettingsV2)
// https://learn.microsoft.com/azure/templates/microsoft.web/sites/config-authsettingsv2
// Same shape: Azure-Samples/remote-mcp-functions-python, infra/app/api.bicep.
resource authSettings 'Microsoft.Web/sites/config@2025-03-01' = if (inboundAuth == 'entra') {
  parent: app
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/healthz'
      ]
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: entraAppId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            entraAppId
          ]
          // The client id of APIM's user-assigned identity, not its principal (object) id.
          defaultAuthorizationPolicy: {
            allowedApplications: [
              allowedCallerClientId
            ]
          }
        }
      }
    }
    // No user sessions: APIM sends a bearer token on every call.
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
  dependsOn: [
    appSettings
  ]
}

// Basic (user name/password) publishing credentials off for FTP and for the SCM site; azd deploys
// with an Entra ID token. https://learn.microsoft.com/azure/app-service/configure-basic-auth-disable
// https://learn.microsoft.com/azure/templates/microsoft.web/sites/basicpublishingcredentialspolicies
resource ftpPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2025-03-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2025-03-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = app.id
output name string = app.name
output defaultHostName string = app.properties.defaultHostName
output uri string = 'https://${app.properties.defaultHostName}'
output planId string = plan.id
