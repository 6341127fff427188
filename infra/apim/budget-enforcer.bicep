// The one grant budget enforcement needs: a custom role holding exactly the three actions to read
// the API Management instance and read and change its subscriptions (suspend, re-activate),
// assigned to the app's identity on that instance only. No built-in role is that narrow: API
// Management Service Contributor can change everything in the instance.
// Deployed into the API Management instance's resource group, only when enforcement is on.

@description('Name of the existing API Management instance whose subscriptions budgets suspend.')
param apimServiceName string

@description('Principal id of the function app\'s user-assigned identity.')
param appPrincipalId string

var roleName = 'Chargeback budget enforcer (${apimServiceName})'
var enforcerActions = [
  'Microsoft.ApiManagement/service/read'
  'Microsoft.ApiManagement/service/subscriptions/read'
  'Microsoft.ApiManagement/service/subscriptions/write'
]

resource apimService 'Microsoft.ApiManagement/service@2024-05-01' existing = {
  name: apimServiceName
}

resource enforcerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, apimService.id, 'chargeback-budget-enforcer')
  properties: {
    roleName: roleName
    description: 'Reads the API Management instance and reads and changes the state of its subscriptions; nothing else.'
    type: 'CustomRole'
    permissions: [
      {
        actions: enforcerActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [resourceGroup().id]
  }
}

resource appEnforcer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(apimService.id, appPrincipalId, enforcerRole.id)
  scope: apimService
  properties: {
    roleDefinitionId: enforcerRole.id
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output roleDefinitionId string = enforcerRole.id
