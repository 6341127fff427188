// The usage hub, the app's consumer group and, when enabled, Capture of every event to blob
// storage (Avro) so that usage can be replayed. Deployed after rbac.bicep: Capture needs the
// namespace's identity to hold its storage role before it is switched on.

param namespaceName string
param eventHubName string
param consumerGroupName string

@minValue(1)
@maxValue(32)
param partitionCount int

@minValue(1)
@maxValue(7)
param messageRetentionInDays int

param enableCapture bool = false
param captureStorageAccountId string = ''
param captureContainerName string = ''

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: namespaceName
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: eventHubName
  properties: {
    partitionCount: partitionCount
    messageRetentionInDays: messageRetentionInDays
    captureDescription: enableCapture
      ? {
          enabled: true
          encoding: 'Avro'
          intervalInSeconds: 300
          sizeLimitInBytes: 314572800
          skipEmptyArchives: true
          destination: {
            name: 'EventHubArchive.AzureBlockBlob'
            identity: {
              type: 'SystemAssigned'
            }
            properties: {
              storageAccountResourceId: captureStorageAccountId
              blobContainer: captureContainerName
              archiveNameFormat: '{Namespace}/{EventHub}/{PartitionId}/{Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}'
            }
          }
        }
      : null
  }
}

resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: hub
  name: consumerGroupName
  properties: {
    userMetadata: 'The chargeback ledger reads the usage events through this group.'
  }
}

output name string = hub.name
output consumerGroupName string = consumerGroup.name
