// Lets API Management's system-assigned identity send to the usage hub's namespace. Deployed
// into the namespace's resource group by apim.bicep.

param eventHubNamespaceName string

@description('Principal id of the API Management instance\'s system-assigned identity.')
param apimPrincipalId string

// Built-in role definition id.
var eventHubsDataSenderRole = '2b629674-e913-4c01-ae53-ef4638d8f975'

resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespaceName
}

resource apimEventHubsSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventHubNamespace.id, apimPrincipalId, eventHubsDataSenderRole)
  scope: eventHubNamespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataSenderRole)
    principalId: apimPrincipalId
    principalType: 'ServicePrincipal'
  }
}
