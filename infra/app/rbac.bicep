// Role assignments on this resource group's resources. Three kinds of principal:
//   the app's user-assigned identity  - reads the hub, runs the host, writes ledger and reports,
//                                       publishes its telemetry with Entra ID;
//   the deploying user (optional)     - runs the simulator against the hub and the app locally,
//                                       reads the reports;
//   the namespace's identity (Capture) - writes Capture blobs; the Event Hubs docs grant its role
//                                       on the storage account, not the container.
// APIM's grant lives with the APIM module (infra/apim/eventhub-sender.bicep) and the Log
// Analytics grants in workspace-access.bicep, because they may sit in other resource groups.

param storageAccountName string
param eventHubNamespaceName string
param applicationInsightsName string

@description('Principal id of the function app\'s user-assigned identity.')
param appPrincipalId string

@description('Principal id of the deploying user or pipeline; empty grants nothing.')
param userPrincipalId string = ''

@allowed(['User', 'ServicePrincipal', 'Group'])
param userPrincipalType string = 'User'

param enableCapture bool = false
param capturePrincipalId string = ''

// Built-in role definition ids.
var eventHubsDataReceiverRole = 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
var eventHubsDataSenderRole = '2b629674-e913-4c01-ae53-ef4638d8f975'
var storageBlobDataOwnerRole = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageBlobDataContributorRole = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageTableDataContributorRole = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var storageQueueDataContributorRole = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var monitoringMetricsPublisherRole = '3913510d-42f4-4e42-8a64-420c390055eb'

var grantUser = !empty(userPrincipalId)

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespaceName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// The app's identity.

resource appEventHubsReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventHubNamespace.id, appPrincipalId, eventHubsDataReceiverRole)
  scope: eventHubNamespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataReceiverRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, storageBlobDataOwnerRole)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, storageTableDataContributorRole)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, storageQueueDataContributorRole)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, appPrincipalId, monitoringMetricsPublisherRole)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The deploying user.

resource userEventHubsSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(eventHubNamespace.id, userPrincipalId, eventHubsDataSenderRole)
  scope: eventHubNamespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataSenderRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userEventHubsReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(eventHubNamespace.id, userPrincipalId, eventHubsDataReceiverRole)
  scope: eventHubNamespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataReceiverRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(storage.id, userPrincipalId, storageBlobDataOwnerRole)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(storage.id, userPrincipalId, storageTableDataContributorRole)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(storage.id, userPrincipalId, storageQueueDataContributorRole)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

// Event Hubs Capture. "Authenticate modes for capturing events" assigns Storage Blob Data
// Contributor on the target storage account; a container-scoped grant is not a documented setup.

resource captureBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableCapture) {
  name: guid(storage.id, capturePrincipalId, storageBlobDataContributorRole)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRole)
    principalId: capturePrincipalId
    principalType: 'ServicePrincipal'
  }
}
