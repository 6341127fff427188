// The Microsoft Entra app registration users and scripts sign in to, created with the Microsoft
// Graph Bicep extension. It carries the app roles the code checks (Chargeback.Admin,
// Chargeback.FinanceReader), emits only the groups assigned to the app in the groups claim (no
// overage however many groups a user is in), and trusts the sign-in identity's federated
// credential instead of a client secret. Its service principal requires an assignment, so only
// users, groups and applications an administrator assigned can get a token at all.
// The deploying principal needs the right to create app registrations in the tenant.

extension 'br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:1.0.0'

@description('Unique name of the registration in the tenant; it keeps redeployments idempotent.')
param uniqueName string

param displayName string

@description('Host name of the function app, for the sign-in redirect.')
param appHostName string

@description('Principal id of the identity whose federated credential replaces a client secret.')
param authIdentityPrincipalId string

// The values the code compares; every role may be held by users (and groups) and by
// applications (client credentials for scripts and automation).
var appRoles = [
  {
    value: 'Chargeback.Admin'
    displayName: 'Chargeback administrator'
    description: 'Reads every report and usage and regenerates reports (redrive and replay use storage roles).'
  }
  {
    value: 'Chargeback.FinanceReader'
    displayName: 'Chargeback finance reader'
    description: 'Reads every report and usage; changes nothing.'
  }
]

var identifierUri = 'api://${tenant().tenantId}/${uniqueName}'
var issuer = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMyOrg'
  identifierUris: [identifierUri]
  groupMembershipClaims: 'ApplicationGroup'
  appRoles: [
    for role in appRoles: {
      id: guid(uniqueName, role.value)
      value: role.value
      displayName: role.displayName
      description: role.description
      allowedMemberTypes: ['User', 'Application']
      isEnabled: true
    }
  ]
  api: {
    requestedAccessTokenVersion: 2
  }
  // App Service Authentication signs a browser in with the hybrid flow (response_type
  // 'code id_token'), which needs ID-token issuance on ("Configure your App Service or Azure
  // Functions app to use Microsoft Entra sign-in": enable ID tokens under "Implicit grant and
  // hybrid flows"). Access tokens still come only from the token endpoint.
  web: {
    redirectUris: ['https://${appHostName}/.auth/login/aad/callback']
    implicitGrantSettings: {
      enableIdTokenIssuance: true
      enableAccessTokenIssuance: false
    }
  }
}

resource signInCredential 'Microsoft.Graph/applications/federatedIdentityCredentials@v1.0' = {
  name: '${app.uniqueName}/app-service-authentication'
  audiences: ['api://AzureADTokenExchange']
  issuer: issuer
  subject: authIdentityPrincipalId
  description: 'App Service Authentication signs in with the function app\'s sign-in identity.'
}

resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: app.appId
  appRoleAssignmentRequired: true
}

output clientId string = app.appId
output identifierUri string = identifierUri
output issuer string = issuer
output servicePrincipalId string = servicePrincipal.id
