// Azure OpenAI account and the chat model deployment the proxy forwards to. Keyless: local (API key)
// auth is off, so callers need an Entra ID token and the Cognitive Services OpenAI User role.
// https://learn.microsoft.com/azure/ai-services/disable-local-auth

param name string
param location string
param tags object = {}

@description('Custom subdomain; required for Entra ID tokens (https://<name>.openai.azure.com).')
param customSubDomainName string

@description('Deployment name, the path segment in /openai/deployments/<name>/...')
param deploymentName string
param modelName string
param modelVersion string
param deploymentSkuName string

@description('Capacity in units of 1,000 tokens per minute for Standard/GlobalStandard SKUs.')
param deploymentCapacity int

// https://learn.microsoft.com/azure/templates/microsoft.cognitiveservices/accounts
resource account 'Microsoft.CognitiveServices/accounts@2025-06-01' = {
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  // No data-plane use of its own; a system identity is what customer-managed keys or other
  // integrations need later, at no cost.
  identity: {
    type: 'SystemAssigned'
  }
  sku: {
    name: 'S0'
  }
  properties: {
    // Entra ID token authentication only works on an endpoint with a custom subdomain.
    // https://learn.microsoft.com/azure/ai-services/cognitive-services-custom-subdomains
    customSubDomainName: customSubDomainName
    disableLocalAuth: true
    // The Flex Consumption app has no fixed outbound IP without a virtual network, so the endpoint
    // stays public; every call still needs an Entra ID token and the OpenAI User role.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
    }
  }
}

// https://learn.microsoft.com/azure/templates/microsoft.cognitiveservices/accounts/deployments
// SKU names (GlobalStandard, Standard, DataZoneStandard...):
// https://learn.microsoft.com/azure/ai-foundry/openai/how-to/deployment-types
resource deployment 'Microsoft.CognitiveServices/accounts/deployments@2025-06-01' = {
  parent: account
  name: deploymentName
  sku: {
    name: deploymentSkuName
    capacity: deploymentCapacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: modelName
      version: modelVersion
    }
    // Keep the pinned version until it retires, then move to the default version: NoAutoUpgrade would
    // make the deployment stop working on the retirement date instead.
    // https://learn.microsoft.com/azure/ai-foundry/openai/how-to/working-with-models#model-deployment-upgrade-configuration
    versionUpgradeOption: 'OnceCurrentVersionExpired'
  }
}

output id string = account.id
output name string = account.name
// https://<customSubDomainName>.openai.azure.com/ (no key is ever output)
output endpoint string = account.properties.endpoint
output deploymentName string = deployment.name
