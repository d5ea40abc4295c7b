// The Function App's own storage account: host storage (AzureWebJobsStorage through the managed
// identity), the Flex Consumption deployment package container, and the dead-letter container for
// usage records that could not be sent to Event Hubs yet. Keyless: shared-key access is off, so only
// Entra ID principals with a data role (rbac.bicep) can read or write.
// https://learn.microsoft.com/azure/storage/common/shared-key-authorization-prevent

param name string
param location string
param tags object = {}

@description('Blob container that holds the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Blob container for dead-lettered usage records (the DEADLETTER_CONTAINER app setting).')
param deadLetterContainerName string

// https://learn.microsoft.com/azure/templates/microsoft.storage/storageaccounts
resource storage 'Microsoft.Storage/storageAccounts@2025-01-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    // No account keys, no SAS signed with them: identity-based access only.
    allowSharedKeyAccess: false
    // The portal and tools default to Entra ID instead of trying keys first.
    defaultToOAuthAuthentication: true
    // No anonymous reads of any container.
    // https://learn.microsoft.com/azure/storage/blobs/anonymous-read-access-prevent
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowCrossTenantReplication: false
    // Flex Consumption without a virtual network reaches its storage over the public endpoint;
    // access is still gated by Entra ID and RBAC.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      services: {
        blob: {
          enabled: true
        }
      }
    }
  }
}

// https://learn.microsoft.com/azure/templates/microsoft.storage/storageaccounts/blobservices
resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2025-01-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

// https://learn.microsoft.com/azure/templates/microsoft.storage/storageaccounts/blobservices/containers
resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2025-01-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2025-01-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

output id string = storage.id
output name string = storage.name
// Endpoint URL only (no key): https://<account>.blob.core.windows.net/
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output deploymentContainerName string = deploymentContainer.name
output deadLetterContainerName string = deadLetterContainer.name
