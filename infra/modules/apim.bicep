// API Management service: the front door consumers call with the stock openai SDK (docs/apim.md).
// Only the service itself lives here, so main.bicep can start this slow resource early and create the
// API, loggers and subscription (apim-api.bicep) after APIM's identity has its roles (rbac.bicep).
// Resource reference (2024-05-01, the newest GA version; v2 tiers need 2024-05-01 or later):
// https://learn.microsoft.com/azure/templates/microsoft.apimanagement/2024-05-01/service

@description('Name of the API Management service (globally unique: it is the gateway host name).')
param name string

param location string = resourceGroup().location
param tags object = {}

// Consumption is deliberately not allowed: it does not support the long-running connections that
// server-sent events need (https://learn.microsoft.com/azure/api-management/how-to-server-sent-events).
// BasicV2 deploys in minutes; classic Developer takes 30-75 minutes and has no SLA
// (https://learn.microsoft.com/azure/api-management/v2-service-tiers-overview).
@description('APIM pricing tier. Consumption is not offered: it cannot hold SSE streams open.')
@allowed([
  'BasicV2'
  'StandardV2'
  'Developer'
])
param skuName string = 'BasicV2'

// Basic v2 and Standard v2 scale to 10 units
// (https://learn.microsoft.com/azure/api-management/v2-service-tiers-overview); the classic Developer
// tier has exactly one and cannot be scaled (https://learn.microsoft.com/azure/api-management/upgrade-and-scale).
@description('Scale units: 1-10 on BasicV2 and StandardV2; Developer always runs 1, whatever is set here.')
@minValue(1)
@maxValue(10)
param skuCapacity int = 1

@description('Shown in the developer portal and used for APIM system notifications.')
param publisherName string

@description('Receives APIM system notifications.')
param publisherEmail string

@description('Resource id of the user-assigned identity APIM uses for its loggers (Event Hubs, App Insights).')
param identityId string

// https://learn.microsoft.com/azure/templates/microsoft.apimanagement/2024-05-01/service
resource apim 'Microsoft.ApiManagement/service@2024-05-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    capacity: skuName == 'Developer' ? 1 : skuCapacity
  }
  // A user-assigned identity is created (and granted its roles) before APIM exists, so the loggers
  // never run without access (https://learn.microsoft.com/azure/api-management/api-management-howto-use-managed-service-identity).
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    publisherName: publisherName
    publisherEmail: publisherEmail
    publicNetworkAccess: 'Enabled'
    virtualNetworkType: 'None'
    // TLS 1.0/1.1 off (the default since 2018), stated; only keys a v2 service reports (the 2024-05-01 spec
    // example ApiManagementCreateServiceSkuv2Service.json: no client-side Ssl30, no ciphers, which v2 fixes).
    // https://learn.microsoft.com/azure/api-management/api-management-howto-manage-protocols-ciphers
    customProperties: {
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls10': 'False'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls11': 'False'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls10': 'False'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls11': 'False'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Ssl30': 'False'
    }
  }
}

output name string = apim.name
output id string = apim.id
// e.g. https://<name>.azure-api.net: consumers use it as AzureOpenAI(azure_endpoint=...).
output gatewayUrl string = apim.properties.gatewayUrl
