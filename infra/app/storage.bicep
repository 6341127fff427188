// A storage account: main.bicep makes two, the data account (usage ledger, dead letters, reports,
// deployment package and, optionally, Event Hubs Capture) and the Functions host's own account,
// so that the host's account-wide roles reach nothing but host state. Keys are disabled: every
// reader and writer signs in with Microsoft Entra ID.

param name string
param location string = resourceGroup().location
param tags object = {}

@description('Blob containers to create (deployment package, reports, dead letters, capture).')
param containerNames string[]

@description('Tables to create (ledger, dead letters, reconciliation).')
param tableNames string[]

@description('Queues to create, e.g. the report job queue.')
param queueNames string[] = []

@description('Refuse traffic from public networks (private endpoints carry it instead).')
param denyPublicNetworks bool = false

@description('With denyPublicNetworks, still let trusted Azure services in (Event Hubs Capture writes that way).')
param allowTrustedServices bool = false

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: denyPublicNetworks && !allowTrustedServices ? 'Disabled' : 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: denyPublicNetworks ? 'Deny' : 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for containerName in containerNames: {
    parent: blobService
    name: containerName
    properties: {
      publicAccess: 'None'
    }
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for tableName in tableNames: {
    parent: tableService
    name: tableName
  }
]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in queueNames: {
    parent: queueService
    name: queueName
  }
]

output id string = storage.id
output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
