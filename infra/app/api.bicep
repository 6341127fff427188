// The function app on the Flex Consumption plan (FC1, Linux, Python 3.11), running as the
// user-assigned identity. Every app setting here is a name the code or the Functions host
// reads, in its identity-based form: no connection strings, no keys.

param name string
param planName string
param location string = resourceGroup().location
param tags object = {}

@description('Resource id and client id of the user-assigned identity the app runs as.')
param identityId string
param identityClientId string

param applicationInsightsConnectionString string

param storageBlobEndpoint string
param storageQueueEndpoint string
param storageTableEndpoint string
param deploymentContainerName string

@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

param eventHubFullyQualifiedNamespace string
param eventHubName string
param consumerGroupName string

param ledgerTableName string
param deadLetterTableName string
param reconciliationTableName string
param reportsContainerName string
param deadLetterContainerName string

param logAnalyticsWorkspaceId string
param metricNamespace string
param subscriptionDimension string
param reconcileSchedule string
param reconcileTolerancePercent string
param reconcileLagHours int
param finalGraceDays int
param priceSheetPath string
param costCentersPath string

var managedIdentity = 'managedidentity'

var appSettings = {
  // Functions host storage (leases, Event Hubs checkpoints, timer schedule).
  AzureWebJobsStorage__credential: managedIdentity
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: storageBlobEndpoint
  AzureWebJobsStorage__queueServiceUri: storageQueueEndpoint
  AzureWebJobsStorage__tableServiceUri: storageTableEndpoint

  // The app's own telemetry, sent with Entra ID (the component has local auth disabled).
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'

  // The Event Hubs trigger: connection, hub and consumer group.
  EventHubConnection__fullyQualifiedNamespace: eventHubFullyQualifiedNamespace
  EventHubConnection__credential: managedIdentity
  EventHubConnection__clientId: identityClientId
  EVENTHUB_NAME: eventHubName
  EVENTHUB_CONSUMER_GROUP: consumerGroupName

  // The ledger and report store.
  ChargebackStorage__tableServiceUri: storageTableEndpoint
  ChargebackStorage__blobServiceUri: storageBlobEndpoint
  ChargebackStorage__queueServiceUri: storageQueueEndpoint
  ChargebackStorage__credential: managedIdentity
  ChargebackStorage__clientId: identityClientId
  CHARGEBACK_LEDGER_TABLE: ledgerTableName
  CHARGEBACK_DEAD_LETTER_TABLE: deadLetterTableName
  CHARGEBACK_RECONCILIATION_TABLE: reconciliationTableName
  CHARGEBACK_REPORTS_CONTAINER: reportsContainerName
  CHARGEBACK_DEAD_LETTER_CONTAINER: deadLetterContainerName
  CHARGEBACK_REPORT_QUEUE: 'report-jobs'

  // Reconciliation against Azure Monitor and the monthly report.
  LOG_ANALYTICS_WORKSPACE_ID: logAnalyticsWorkspaceId
  CHARGEBACK_MONITOR_CLIENT_ID: identityClientId
  CHARGEBACK_METRIC_NAMESPACE: metricNamespace
  CHARGEBACK_SUBSCRIPTION_DIMENSION: subscriptionDimension
  RECONCILE_SCHEDULE: reconcileSchedule
  CHARGEBACK_RECONCILE_TOLERANCE_PERCENT: reconcileTolerancePercent
  CHARGEBACK_RECONCILE_LAG_HOURS: string(reconcileLagHours)
  CHARGEBACK_FINAL_GRACE_DAYS: string(finalGraceDays)
  CHARGEBACK_PRICE_SHEET: priceSheetPath
  CHARGEBACK_COST_CENTERS: costCentersPath
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

  resource settings 'config' = {
    name: 'appsettings'
    properties: appSettings
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
