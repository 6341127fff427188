// App Service Authentication on the function app: every request must carry a Microsoft Entra
// sign-in of this tenant, for the app registration entra-app.bicep creates, before it reaches
// the Functions host. Browsers are sent to the sign-in page; a script presents a bearer token
// (client credentials), which the platform validates before the unauthenticated action could
// apply. The platform then sets X-MS-CLIENT-PRINCIPAL (replacing any copy the client sent) and
// WEBSITE_AUTH_ENABLED in the app's environment: platform.enabled below is the setting that
// proves the header came from the platform.

param siteName string

@description('Application (client) id and identifier URI of the Entra app registration.')
param clientId string
param identifierUri string

@description('Issuer of the tenant\'s v2.0 tokens.')
param issuer string

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: siteName
}

resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'RedirectToLoginPage'
      redirectToProvider: 'azureactivedirectory'
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: clientId
          openIdIssuer: issuer
          // Not a secret: the name of the setting that tells the platform to sign in with the
          // sign-in identity's federated credential (api.bicep sets it).
          clientSecretSettingName: 'OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID'
        }
        validation: {
          allowedAudiences: [clientId, identifierUri]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}
