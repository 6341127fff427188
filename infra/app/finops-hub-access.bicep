// Lets the app deliver final reports to a FinOps hub: Storage Blob Data Contributor on the hub
// storage account's `ingestion` container and nothing else of the hub. The FinOps toolkit's hub
// reads FOCUS Parquet dropped there (ingestion/Costs/{yyyy}/{mm}/{scope}/...) once a
// manifest.json lands beside it. Deployed into the hub's own resource group, which is not this
// deployment's; main.bicep calls it only when a hub is named.

@description('Name of the FinOps hub\'s storage account (the one holding its `ingestion` container).')
param storageAccountName string

@description('Principal id of the function app\'s user-assigned identity.')
param appPrincipalId string

// Built-in role definition id.
var storageBlobDataContributorRole = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName

  resource blobService 'blobServices' existing = {
    name: 'default'

    resource ingestionContainer 'containers' existing = {
      name: 'ingestion'
    }
  }
}

resource appIngestionContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::blobService::ingestionContainer.id, appPrincipalId, storageBlobDataContributorRole)
  scope: storage::blobService::ingestionContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

@description('The hub account\'s blob endpoint, which CHARGEBACK_FINOPS_HUB_STORAGE names.')
output blobEndpoint string = storage.properties.primaryEndpoints.blob
