// Role assignments in this resource group, each on the narrowest scope its holder needs:
//   the app's identity     - receives from the usage hub; runs the Functions host on the host
//                            storage account (leases, checkpoints, timers, keys); reads and writes
//                            the ledger, dead-letter, reconciliation and budget tables and the
//                            reports and dead-letter containers of the data account and the
//                            report queue with its poison queue, and no data beyond them (not the
//                            deployment package); asks the data account for user delegation keys;
//                            publishes telemetry with Entra ID; (with budget enforcement on)
//                            changes the state of the APIM instance's subscriptions, in
//                            apim/budget-enforcer.bicep;
//   the deploy identity    - writes and reads the deployment package container, nothing else;
//   the deploying user     - sends simulated usage to the hub and runs the app locally, so it
//     (optional)             gets what the app gets (on the same scopes) plus send on the hub;
// Capture's grant is in capture-access.bicep (it must exist before Capture is switched on, and
// these grants come after the hub exists); APIM's live with the APIM module (infra/apim/) and
// the Log Analytics grants in workspace-access.bicep, because they may sit in other resource
// groups.

@description('The data account: ledger tables, reports, dead letters, deployment package, capture.')
param storageAccountName string

@description('The Functions host\'s own account (AzureWebJobsStorage).')
param hostStorageAccountName string

param eventHubNamespaceName string
param eventHubName string
param applicationInsightsName string

param ledgerTableName string
param deadLetterTableName string
param reconciliationTableName string
param budgetTableName string
param reportsContainerName string
param deadLetterContainerName string
param deploymentContainerName string
param reportQueueName string

@description('The queue the Functions host moves a report job to after its last failed attempt.')
param reportPoisonQueueName string

@description('Principal id of the function app\'s user-assigned identity.')
param appPrincipalId string

@description('Principal id of the identity the platform writes and reads the deployment package with.')
param deployPrincipalId string

@description('Principal id of the deploying user or pipeline; empty grants nothing.')
param userPrincipalId string = ''

@allowed(['User', 'ServicePrincipal', 'Group'])
param userPrincipalType string = 'User'

// Built-in role definition ids.
var eventHubsDataReceiverRole = 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
var eventHubsDataSenderRole = '2b629674-e913-4c01-ae53-ef4638d8f975'
var storageBlobDataOwnerRole = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageBlobDataContributorRole = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageTableDataContributorRole = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var storageQueueDataContributorRole = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var monitoringMetricsPublisherRole = '3913510d-42f4-4e42-8a64-420c390055eb'
var storageBlobDelegatorRole = 'db58b8e5-c6ad-4a2a-8342-4190687cbf4a'

var grantUser = !empty(userPrincipalId)

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName

  resource blobService 'blobServices' existing = {
    name: 'default'

    resource reportsContainer 'containers' existing = {
      name: reportsContainerName
    }

    resource deadLetterContainer 'containers' existing = {
      name: deadLetterContainerName
    }

    resource deploymentContainer 'containers' existing = {
      name: deploymentContainerName
    }
  }

  resource tableService 'tableServices' existing = {
    name: 'default'

    resource ledgerTable 'tables' existing = {
      name: ledgerTableName
    }

    resource deadLetterTable 'tables' existing = {
      name: deadLetterTableName
    }

    resource reconciliationTable 'tables' existing = {
      name: reconciliationTableName
    }

    resource budgetTable 'tables' existing = {
      name: budgetTableName
    }
  }

  resource queueService 'queueServices' existing = {
    name: 'default'

    resource reportQueue 'queues' existing = {
      name: reportQueueName
    }

    resource reportPoisonQueue 'queues' existing = {
      name: reportPoisonQueueName
    }
  }
}

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageAccountName
}

resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespaceName

  resource hub 'eventhubs' existing = {
    name: eventHubName
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// The app's identity. The Functions host names its own containers, queues and tables
// (azure-webjobs-*), so it holds its roles on the host account, which holds nothing else; on
// the data account it holds roles only on the tables and containers the code uses.


resource appHubReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventHubNamespace::hub.id, appPrincipalId, eventHubsDataReceiverRole)
  scope: eventHubNamespace::hub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataReceiverRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appHostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, appPrincipalId, storageBlobDataOwnerRole)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appHostQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, appPrincipalId, storageQueueDataContributorRole)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appHostTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, appPrincipalId, storageTableDataContributorRole)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appLedgerTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::tableService::ledgerTable.id, appPrincipalId, storageTableDataContributorRole)
  scope: storage::tableService::ledgerTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appDeadLetterTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::tableService::deadLetterTable.id, appPrincipalId, storageTableDataContributorRole)
  scope: storage::tableService::deadLetterTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appReconciliationTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::tableService::reconciliationTable.id, appPrincipalId, storageTableDataContributorRole)
  scope: storage::tableService::reconciliationTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appBudgetTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::tableService::budgetTable.id, appPrincipalId, storageTableDataContributorRole)
  scope: storage::tableService::budgetTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Each queue, the narrowest scope "Authorize access to queues using Microsoft Entra ID" lists
// (a queue, the account, the resource group, ...; not the queue service): the report queue, and
// the poison queue the trigger moves a job to after its last failed attempt (Bicep creates it).
resource appReportQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::queueService::reportQueue.id, appPrincipalId, storageQueueDataContributorRole)
  scope: storage::queueService::reportQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appReportPoisonQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::queueService::reportPoisonQueue.id, appPrincipalId, storageQueueDataContributorRole)
  scope: storage::queueService::reportPoisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appReportsContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::blobService::reportsContainer.id, appPrincipalId, storageBlobDataContributorRole)
  scope: storage::blobService::reportsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Report downloads redirect to short-lived links signed with a user delegation key. "Get User
// Delegation Key" acts on the storage account: its generateUserDelegationKey action must be
// scoped at the storage account, the resource group or the subscription, so this role sits on
// the data account. It carries no data action: a link reads only what the signer may read (the
// reports container, above).
resource appBlobDelegator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, storageBlobDelegatorRole)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDelegatorRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appDeadLetterBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::blobService::deadLetterContainer.id, appPrincipalId, storageBlobDataContributorRole)
  scope: storage::blobService::deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRole)
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

// The deploy identity: the platform writes the package it is given and reads it at start-up.
// The app's identity holds no role here, so the app's own connections cannot replace its code.


resource deployPackageContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::blobService::deploymentContainer.id, deployPrincipalId, storageBlobDataContributorRole)
  scope: storage::blobService::deploymentContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRole)
    principalId: deployPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The deploying user: what the app holds, to run it locally, plus send on the hub for the
// simulator.


resource userHubReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(eventHubNamespace::hub.id, userPrincipalId, eventHubsDataReceiverRole)
  scope: eventHubNamespace::hub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataReceiverRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userBlobDelegator 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(storage.id, userPrincipalId, storageBlobDelegatorRole)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDelegatorRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userHostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(hostStorage.id, userPrincipalId, storageBlobDataOwnerRole)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userHostQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(hostStorage.id, userPrincipalId, storageQueueDataContributorRole)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userHostTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(hostStorage.id, userPrincipalId, storageTableDataContributorRole)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userLedgerTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(storage::tableService::ledgerTable.id, userPrincipalId, storageTableDataContributorRole)
  scope: storage::tableService::ledgerTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userDeadLetterTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(storage::tableService::deadLetterTable.id, userPrincipalId, storageTableDataContributorRole)
  scope: storage::tableService::deadLetterTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userReconciliationTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(storage::tableService::reconciliationTable.id, userPrincipalId, storageTableDataContributorRole)
  scope: storage::tableService::reconciliationTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userBudgetTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(storage::tableService::budgetTable.id, userPrincipalId, storageTableDataContributorRole)
  scope: storage::tableService::budgetTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userReportQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(storage::queueService::reportQueue.id, userPrincipalId, storageQueueDataContributorRole)
  scope: storage::queueService::reportQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userReportPoisonQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(storage::queueService::reportPoisonQueue.id, userPrincipalId, storageQueueDataContributorRole)
  scope: storage::queueService::reportPoisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userReportsContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(storage::blobService::reportsContainer.id, userPrincipalId, storageBlobDataContributorRole)
  scope: storage::blobService::reportsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userDeadLetterBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(storage::blobService::deadLetterContainer.id, userPrincipalId, storageBlobDataContributorRole)
  scope: storage::blobService::deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userHubSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantUser) {
  name: guid(eventHubNamespace::hub.id, userPrincipalId, eventHubsDataSenderRole)
  scope: eventHubNamespace::hub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataSenderRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}
