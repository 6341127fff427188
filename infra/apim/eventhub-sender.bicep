// Lets API Management's system-assigned identity send to the usage hub, and only to it.
// Deployed into the namespace's resource group by apim.bicep.

param eventHubNamespaceName string
param eventHubName string

@description('Principal id of the API Management instance\'s system-assigned identity.')
param apimPrincipalId string

// Built-in role definition id.
var eventHubsDataSenderRole = '2b629674-e913-4c01-ae53-ef4638d8f975'

resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespaceName

  resource hub 'eventhubs' existing = {
    name: eventHubName
  }
}

resource apimHubSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventHubNamespace::hub.id, apimPrincipalId, eventHubsDataSenderRole)
  scope: eventHubNamespace::hub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataSenderRole)
    principalId: apimPrincipalId
    principalType: 'ServicePrincipal'
  }
}
