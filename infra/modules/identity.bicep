// The Function App's user-assigned managed identity: one identity for upstream tokens (Azure OpenAI),
// Event Hubs, host storage, deployment storage and telemetry, so every role is granted to one principal.
// Resource reference: https://learn.microsoft.com/azure/templates/microsoft.managedidentity/userassignedidentities

param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
