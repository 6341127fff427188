// Lets the Event Hubs namespace's identity write Capture files. "Authenticate modes for capturing
// events to destinations" assigns Storage Blob Data Contributor on the destination storage
// account; a container-scoped grant is not a documented setup. Deployed before the hub, because
// Capture checks its access when it is switched on.

param storageAccountName string

@description('Principal id of the namespace\'s system-assigned identity.')
param capturePrincipalId string

// Built-in role definition id.
var storageBlobDataContributorRole = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource captureBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, capturePrincipalId, storageBlobDataContributorRole)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRole)
    principalId: capturePrincipalId
    principalType: 'ServicePrincipal'
  }
}
