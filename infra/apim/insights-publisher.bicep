// Lets API Management's system-assigned identity publish the token metric to the Application
// Insights component (local authentication is off there). Deployed into the component's
// resource group by apim.bicep.

param applicationInsightsName string

@description('Principal id of the API Management instance\'s system-assigned identity.')
param apimPrincipalId string

// Built-in role definition id.
var monitoringMetricsPublisherRole = '3913510d-42f4-4e42-8a64-420c390055eb'

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource apimMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, apimPrincipalId, monitoringMetricsPublisherRole)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRole)
    principalId: apimPrincipalId
    principalType: 'ServicePrincipal'
  }
}
