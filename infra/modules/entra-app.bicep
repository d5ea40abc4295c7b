// Entra mode (APIM_FUNCTION_AUTH=entra): the Function API's app registration and its service principal,
// with the Microsoft Graph Bicep extension (GA; alias and pinned version in infra/bicepconfig.json).
// APIM asks Entra ID for a token for this app with its managed identity (authentication-managed-identity),
// and the Function App's built-in authentication accepts only tokens for it (functionapp.bicep).
// https://learn.microsoft.com/graph/templates/bicep/reference/applications?view=graph-bicep-1.0
// https://learn.microsoft.com/graph/templates/bicep/reference/serviceprincipals?view=graph-bicep-1.0
// Who may deploy it (a user allowed to register apps; a pipeline principal with admin-granted
// Application.ReadWrite.OwnedBy) and what remains after `azd down`: docs/deploy.md#entra-mode.
extension microsoftGraphV1

@description('Alternate key of the app registration; it makes the deployment idempotent. It carries a per-environment random suffix: a deleted app keeps its uniqueName while soft-deleted.')
@minLength(12)
@maxLength(120)
param uniqueName string

@description('Display name of the app registration.')
param displayName string

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  // Single tenant; a resource API only: no secrets, no certificates, no redirect URIs, no App ID URI
  // (the token audience is the application id).
  signInAudience: 'AzureADMyOrg'
  api: {
    // v2 tokens: the caller's client id is in `azp` (v1 tokens carry `appid`).
    // https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference
    requestedAccessTokenVersion: 2
  }
}

resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: app.appId
}

output appId string = app.appId
output objectId string = app.id
output servicePrincipalId string = servicePrincipal.id
