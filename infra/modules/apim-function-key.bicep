// APIM's secret named value `function-host-key` from the Function App's default host key (key mode).
// main.bicep deploys this only when the preprovision hook found code on the app
// (APIM_FUNCTION_KEY_SYNC=read): listKeys on host/default answers reliably only then (bicep-types-az#1356,
// azure-functions-host#11379). Reading the key here keeps it inside this module: it is never a parameter
// or an output, and the named value is secret, so the deployment history never shows it.
// listKeys on host/default: https://learn.microsoft.com/azure/azure-resource-manager/bicep/bicep-functions-resource#implementation-details
// (pamelafox/fastapi-azure-function-apim, infra/apimanagement.bicep, reads the Function key the same way).
// https://learn.microsoft.com/azure/templates/microsoft.apimanagement/2024-05-01/service/namedvalues

@description('Name of the existing API Management service.')
param apimName string

@description('Name of the existing Function App whose default host key APIM sends as x-functions-key.')
param functionAppName string

@description('Name of the secret named value the backend entity refers to.')
param namedValueName string

resource apim 'Microsoft.ApiManagement/service@2024-05-01' existing = {
  name: apimName
}

resource functionApp 'Microsoft.Web/sites@2025-03-01' existing = {
  name: functionAppName
}

resource functionKey 'Microsoft.ApiManagement/service/namedValues@2024-05-01' = {
  parent: apim
  name: namedValueName
  properties: {
    displayName: namedValueName
    secret: true
    // The host's own `default` key: creating a dedicated key fails on Flex Consumption
    // (azure-functions-host#11379). The postdeploy hook writes this same key.
    value: listKeys('${functionApp.id}/host/default', '2024-11-01').functionKeys.default
    tags: [
      'function-app'
    ]
  }
}

output namedValueName string = functionKey.name
