// The function app on the Flex Consumption plan (FC1, Linux, Python 3.11 to 3.13), running as the
// app's user-assigned identity. Every app setting here is a name the code, the Functions host
// or the platform reads, in its identity-based form: no connection strings, no keys.
// Three identities are attached: the app's (every connection of the code and the host), the
// deploy identity (the platform writes and reads the deployment package with it) and the
// sign-in identity (App Service Authentication's credential towards the Entra app registration).

param name string
param planName string
param location string = resourceGroup().location
param tags object = {}

@description('Resource id and client id of the user-assigned identity the app runs as.')
param identityId string
param identityClientId string

@description('Resource id of the identity the platform writes and reads the deployment package with.')
param deployIdentityId string

@description('Resource id and client id of the identity App Service Authentication signs in to Entra ID with.')
param authIdentityId string
param authIdentityClientId string

param applicationInsightsConnectionString string

@description('Endpoints of the data account: ledger tables, reports, dead letters, deployment package.')
param storageBlobEndpoint string
param storageTableEndpoint string
param storageQueueEndpoint string
@description('The Storage queue of report generation jobs (CHARGEBACK_REPORT_QUEUE).')
param reportQueueName string
param deploymentContainerName string

@description('Endpoints of the Functions host\'s own account (AzureWebJobsStorage).')
param hostBlobEndpoint string
param hostQueueEndpoint string
param hostTableEndpoint string

@description('Subnet (delegated to Microsoft.App/environments) for VNet integration; empty for none.')
param virtualNetworkSubnetId string = ''

@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@minValue(40)
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

@description('What the gateway\'s LLM logs bill: streamed calls (the usage events bill the rest), all calls, or off.')
@allowed(['streamed', 'all', 'off'])
param llmLogScope string = 'streamed'

@description('Blob endpoint of a FinOps hub\'s storage account final reports are delivered to; empty for none.')
param finopsHubBlobEndpoint string = ''

@description('Folder of this source under each month in the hub; empty: chargeback/<provider, slugged>.')
param finopsHubScope string = ''

@description('Logs ingestion endpoint and immutable id of the data collection rule report lines are published through.')
param linesEndpoint string = ''
param linesRuleId string = ''

@description('Budget records: threshold crossings, suspensions, breaker trips (CHARGEBACK_BUDGET_TABLE).')
param budgetTableName string
@description('Path, relative to the app root, of the budget file; empty: no budgets.')
param budgetsPath string = 'config/budgets.csv'
@description('NCRONTAB schedule of the budget evaluation timer.')
param budgetSchedule string = '0 */15 * * * *'
@description('on: exceeded suspend budgets suspend their APIM subscriptions; off: they show would_suspend.')
@allowed(['off', 'on'])
param budgetEnforcement string = 'off'
@description('Resource id of the API Management instance whose subscriptions budgets act on; empty: none.')
param apimResourceId string = ''
@minValue(0)
param maxSuspensions int = 5

@description('How report files are served: redirect (a short-lived link to the blob) or inline (through the app, when callers cannot reach the storage account).')
@allowed(['redirect', 'inline'])
param downloads string = 'redirect'

@description('Who provides the gateway\'s service and issues the chargeback: FOCUS ProviderName and InvoiceIssuerName.')
@minLength(1)
param providerName string

@description('Python version the platform runs the app on (functionAppConfig.runtime).')
@allowed(['3.11', '3.12', '3.13'])
param pythonVersion string

var managedIdentity = 'managedidentity'

var appSettings = {
  // Functions host storage (leases, Event Hubs checkpoints, timer schedule, keys): its own account.
  AzureWebJobsStorage__credential: managedIdentity
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: hostBlobEndpoint
  AzureWebJobsStorage__queueServiceUri: hostQueueEndpoint
  AzureWebJobsStorage__tableServiceUri: hostTableEndpoint

  // App Service Authentication signs in to the Entra app registration with this identity's
  // federated credential instead of a client secret (read by the platform, not the code).
  OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID: authIdentityClientId

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
  CHARGEBACK_REPORT_QUEUE: reportQueueName

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
  CHARGEBACK_PROVIDER_NAME: providerName

  // Streamed calls are billed from API Management's LLM logs in the same workspace.
  CHARGEBACK_LLM_LOG_SCOPE: llmLogScope

  // Report files are links to the reports container unless callers cannot reach storage.
  CHARGEBACK_DOWNLOADS: downloads

  // Each final month's FOCUS costs go to a FinOps hub's ingestion container, with the app's identity.
  CHARGEBACK_FINOPS_HUB_STORAGE: finopsHubBlobEndpoint
  CHARGEBACK_FINOPS_HUB_SCOPE: finopsHubScope

  // Each committed generation's lines go to Log Analytics through this rule, with the app's identity.
  CHARGEBACK_LINES_ENDPOINT: linesEndpoint
  CHARGEBACK_LINES_RULE_ID: linesRuleId

  // Budgets: evaluated on a timer, recorded in their own table, enforced through Azure Resource
  // Manager (in this cloud) with the app's identity and a custom role on the one instance.
  CHARGEBACK_BUDGETS: budgetsPath
  BUDGET_SCHEDULE: budgetSchedule
  CHARGEBACK_BUDGET_TABLE: budgetTableName
  CHARGEBACK_ENFORCEMENT: budgetEnforcement
  CHARGEBACK_APIM_RESOURCE_ID: apimResourceId
  CHARGEBACK_ARM_ENDPOINT: environment().resourceManager
  CHARGEBACK_ARM_CLIENT_ID: identityClientId
  CHARGEBACK_MAX_SUSPENSIONS: string(maxSuspensions)
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
      '${deployIdentityId}': {}
      '${authIdentityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    // Flex Consumption rejects most siteConfig properties (ftpsState among them, ARM error
    // 51021 on newer stamps); TLS 1.2 is the one kept here. FTP is not offered on Flex at all.
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: deployIdentityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
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
