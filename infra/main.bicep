// The token chargeback pipeline: a Flex Consumption function app that reads the gateway's usage
// events from Event Hubs into a Table Storage ledger, reconciles it with Azure Monitor and
// writes monthly reports to blob storage, behind Microsoft Entra sign-in. Optionally wires an
// existing API Management instance (infra/apim/apim.bicep) to send the events, and optionally
// keeps storage and Event Hubs off public networks (privateNetworking).

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; it seeds the resource token and tags every resource.')
param environmentName string

@minLength(1)
@description('Region of every resource; it must offer the Flex Consumption plan.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the deploying user or pipeline; empty grants nothing to it.')
param principalId string = ''

@allowed(['User', 'ServicePrincipal', 'Group'])
@description('Kind of principal principalId names.')
param principalType string = 'User'

@description('Name of the usage event hub (EVENTHUB_NAME).')
param eventHubName string = 'aoai-usage'

@description('Consumer group the app reads with (EVENTHUB_CONSUMER_GROUP).')
param consumerGroupName string = 'chargeback'

@minValue(1)
@maxValue(32)
@description('Partitions of the usage hub. A Standard hub cannot change this after creation.')
param partitionCount int = 4

@minValue(1)
@maxValue(7)
@description('Days the hub keeps events: how far back the app can re-read after an outage.')
param messageRetentionInDays int = 7

@description('Capture every usage event to the capture blob container (Avro) for replay.')
param enableCapture bool = false

@allowed([512, 2048, 4096])
@description('Memory of each Flex Consumption instance, in MB.')
param instanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
@description('Most instances the app scales out to: 40 to 1000, the range every Flex Consumption stamp accepts.')
param maximumInstanceCount int = 40

@description('NCRONTAB schedule of the reconciliation timer (RECONCILE_SCHEDULE).')
param reconcileSchedule string = '0 0 2 * * *'

@description('Ledger and monitor may differ by this many percent and still match.')
param reconcileTolerancePercent string = '1.0'

@minValue(0)
@description('Hours the reconciliation waits for Azure Monitor ingestion before judging a day.')
param reconcileLagHours int = 6

@minValue(0)
@description('Days after a month ends before its report is final.')
param finalGraceDays int = 5

@description('Path, relative to the app root, of the price sheet (CHARGEBACK_PRICE_SHEET).')
param priceSheetPath string = 'config/price-sheet.json'

@description('Path, relative to the app root, of the subscription to cost-center map.')
param costCentersPath string = 'config/cost-centers.csv'

@allowed(['streamed', 'all', 'off'])
@description('What API Management\'s LLM logs bill (CHARGEBACK_LLM_LOG_SCOPE): streamed calls, the usage events billing the rest (a gateway with a usage-event policy); all calls, usage events set aside (a gateway with LLM logging and no usage-event policy); or off.')
param llmLogScope string = 'streamed'

@minLength(1)
@description('The platform team that runs the gateway: provider and invoice issuer in the FOCUS export (CHARGEBACK_PROVIDER_NAME).')
param providerName string = 'AI gateway platform'

@allowed(['auto', 'redirect', 'inline'])
@description('How report files are served (CHARGEBACK_DOWNLOADS): redirect to a 10-minute read-only link, or inline through the app; auto is inline with privateNetworking (callers cannot reach the storage account), else redirect.')
param reportDownloads string = 'auto'

@allowed(['3.11', '3.12', '3.13'])
@description('Python version of the function app: the app runs on 3.11, 3.12 and 3.13 (chargeback/interpreter.py).')
param pythonVersion string = '3.11'

@description('Namespace of the token metric APIM emits (the chargeback-token-metric fragment uses openai).')
param metricNamespace string = 'openai'

@description('Resource id of the Log Analytics workspace APIM\'s Application Insights reports to; empty creates one.')
param existingLogAnalyticsWorkspaceId string = ''

@description('Grant principalId read access on the workspace. Set false when it already holds that role on an existing workspace: ARM refuses a second assignment of the same role (RoleAssignmentExists).')
param grantPrincipalWorkspaceAccess bool = true

@description('Keep storage and Event Hubs off public networks: VNet integration for the app, private endpoints, public access off. Off by default so that azd up works from a laptop.')
param privateNetworking bool = false

@description('Name of an existing API Management instance to wire to the hub; empty skips it.')
param apimServiceName string = ''

@description('Resource group of that API Management instance; empty means this deployment\'s.')
param apimResourceGroupName string = ''

@description('Name (id) of the Azure OpenAI API in that instance; required with apimServiceName.')
param apimApiName string = ''

@description('Also log prompt and completion messages in the LLM logs (off: privacy and cost).')
param logLlmMessages bool = false

@description('Create the APIM diagnostic setting that sends GatewayLogs and GatewayLlmLogs to the workspace. Set false when a setting of the instance already sends both there as resource-specific tables: Azure Monitor refuses a second one ("Data sink ... is already used").')
param createApimDiagnosticSetting bool = true

@description('With privateNetworking and apimServiceName: confirm that API Management reaches the Event Hubs namespace\'s private endpoint (injected into a peered network, or a private endpoint of its own). Without it the deployment refuses that combination.')
param apimReachesPrivateNetwork bool = false
@description('Resource id of a FinOps hub\'s storage account to deliver each final month\'s FOCUS costs to; empty delivers nowhere.')
param finopsHubStorageAccountId string = ''

@description('Folder of this source under each month in the hub (CHARGEBACK_FINOPS_HUB_SCOPE); empty: chargeback/<provider, slugged>.')
param finopsHubScope string = ''

@description('Email addresses the operations alerts go to (the action group\'s receivers); empty: the rules fire without mail.')
param alertEmails array = []

@description('Path, relative to the app root, of the budget file (CHARGEBACK_BUDGETS); empty: no budgets.')
param budgetsPath string = 'config/budgets.csv'

@description('NCRONTAB schedule of the budget evaluation timer (BUDGET_SCHEDULE).')
param budgetSchedule string = '0 */15 * * * *'

@allowed(['off', 'on'])
@description('on: exceeded suspend budgets suspend their APIM subscriptions (needs apimServiceName); off: they show would_suspend.')
param budgetEnforcement string = 'off'

@minValue(0)
@description('More suspensions due in one evaluation than this trips the breaker (CHARGEBACK_MAX_SUSPENSIONS).')
param maxSuspensions int = 5

@minValue(0)
@description('Tokens each APIM subscription may use a month before the gateway refuses (the chargeback-token-quota fragment); 0: none.')
param apimMonthlyTokenQuota int = 0

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }

var functionAppName = '${abbrs.webSitesFunctions}api-${resourceToken}'
var deploymentContainerName = 'app-package-${resourceToken}'

// Names the code defaults to (chargeback/settings.py); Bicep creates them and sets them too.
var ledgerTableName = 'usageledger'
var deadLetterTableName = 'usagedeadletters'
var reconciliationTableName = 'usagereconciliation'
var budgetTableName = 'budgetstate'
var reportsContainerName = 'reports'
var reportQueueName = 'report-jobs'
// The Functions host moves a job that failed its last attempt to <queue>-poison; Bicep creates it
// so that the app's role can be granted on that queue alone.
var reportPoisonQueueName = '${reportQueueName}-poison'
var deadLetterContainerName = 'deadletters'
var captureContainerName = 'capture'

// The dimension of APIM's token metric that carries the APIM subscription id; the token
// metric fragment and the toolkit's policy both emit it under this default name.
var subscriptionDimension = 'Subscription ID'

var resourceGroupName = '${abbrs.resourcesResourceGroups}${environmentName}'

// Where the workspace lives: ours, or the resource group of the existing one.
var existingWorkspaceParts = split(existingLogAnalyticsWorkspaceId, '/')
var useExistingWorkspace = !empty(existingLogAnalyticsWorkspaceId)
var workspaceSubscriptionId = useExistingWorkspace ? existingWorkspaceParts[2] : subscription().subscriptionId
var workspaceResourceGroupName = useExistingWorkspace ? existingWorkspaceParts[4] : resourceGroupName

// Combinations that would deploy and then fail late, or lose usage without an error, are
// refused before anything is deployed: fail() in a value computed from parameters alone stops
// the deployment when Azure Resource Manager validates the template (Bicep's flow control
// functions). Without a network path, API Management's log-to-eventhub drops every event and
// never fails the call; without an API name, the module fails only after the rest is deployed.
var wireApim = empty(apimServiceName)
  ? false
  : empty(apimApiName)
      ? fail('apimServiceName is set but apimApiName is empty: name the Azure OpenAI API whose calls are billed.')
      : privateNetworking && !apimReachesPrivateNetwork
          ? fail('privateNetworking turns public access to the Event Hubs namespace off, and an API Management instance without a path to its private endpoint would drop every usage event without an error. Give the instance that path, then set apimReachesPrivateNetwork=true.')
          : true

// The deployer's choice; auto serves files through the app with storage off public networks,
// where callers could not follow a link to it. Both branches are literals: Bicep does not narrow
// reportDownloads by the condition, and the api module allows only 'redirect' and 'inline'.
var downloads = reportDownloads == 'inline' || (reportDownloads == 'auto' && privateNetworking) ? 'inline' : 'redirect'

// Where the FinOps hub's storage account lives: usually the hub's own resource group.
var useFinopsHub = !empty(finopsHubStorageAccountId)
var finopsHubParts = split(finopsHubStorageAccountId, '/')

var apimResourceGroup = empty(apimResourceGroupName) ? resourceGroupName : apimResourceGroupName
// The one API Management instance budgets act on: the one this deployment wires, if any.
var apimResourceId = wireApim
  ? resourceId(subscription().subscriptionId, apimResourceGroup, 'Microsoft.ApiManagement/service', apimServiceName)
  : ''
var enforceBudgets = wireApim && budgetEnforcement == 'on'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: resourceGroupName
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

// The platform writes and reads the deployment package with this identity; the app's identity
// has no role on the package, so the app's own connections cannot replace its code.
module deployIdentity 'app/identity.bicep' = {
  name: 'deploy-identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}deploy-${resourceToken}'
    location: location
    tags: tags
  }
}

// App Service Authentication's credential towards the Entra app registration (a federated
// credential instead of a client secret); it holds no Azure role.
module authIdentity 'app/identity.bicep' = {
  name: 'auth-identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}auth-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    containerNames: concat(
      [deploymentContainerName, reportsContainerName, deadLetterContainerName],
      enableCapture ? [captureContainerName] : []
    )
    tableNames: [ledgerTableName, deadLetterTableName, reconciliationTableName, budgetTableName]
    queueNames: [reportQueueName, reportPoisonQueueName]
    denyPublicNetworks: privateNetworking
    allowTrustedServices: enableCapture
  }
}

// The Functions host's own account: the host names its containers, queues and tables itself, so
// its roles are account-wide; a separate account keeps them away from the ledger and reports.
module hostStorage 'app/storage.bicep' = {
  name: 'host-storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}host${resourceToken}'
    location: location
    tags: tags
    containerNames: []
    tableNames: []
    denyPublicNetworks: privateNetworking
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    existingLogAnalyticsWorkspaceId: existingLogAnalyticsWorkspaceId
  }
}

module eventHubs 'app/eventhubs.bicep' = {
  name: 'eventhubs'
  scope: rg
  params: {
    name: '${abbrs.eventHubNamespaces}${resourceToken}'
    location: location
    tags: tags
    enableCapture: enableCapture
    denyPublicNetworks: privateNetworking
  }
}

module network 'app/network.bicep' = if (privateNetworking) {
  name: 'network'
  scope: rg
  params: {
    name: '${abbrs.networkVirtualNetworks}${resourceToken}'
    location: location
    tags: tags
    dataStorageAccountId: storage.outputs.id
    hostStorageAccountId: hostStorage.outputs.id
    eventHubNamespaceId: eventHubs.outputs.id
    eventHubFullyQualifiedNamespace: eventHubs.outputs.fullyQualifiedNamespace
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    hostStorageAccountName: hostStorage.outputs.name
    eventHubNamespaceName: eventHubs.outputs.name
    eventHubName: eventHub.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    ledgerTableName: ledgerTableName
    deadLetterTableName: deadLetterTableName
    reconciliationTableName: reconciliationTableName
    budgetTableName: budgetTableName
    reportsContainerName: reportsContainerName
    deadLetterContainerName: deadLetterContainerName
    deploymentContainerName: deploymentContainerName
    reportQueueName: reportQueueName
    reportPoisonQueueName: reportPoisonQueueName
    appPrincipalId: identity.outputs.principalId
    deployPrincipalId: deployIdentity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
  }
}

module captureAccess 'app/capture-access.bicep' = if (enableCapture) {
  name: 'capture-access'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    capturePrincipalId: eventHubs.outputs.principalId
  }
}

module workspaceAccess 'app/workspace-access.bicep' = {
  name: 'workspace-access-${resourceToken}'
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroupName)
  params: {
    workspaceName: monitoring.outputs.workspaceName
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: grantPrincipalWorkspaceAccess ? principalId : ''
    userPrincipalType: principalType
  }
}

// Report lines in Log Analytics: the custom table, the data collection rule the app publishes
// through, and the app's right to publish to that rule only; in the workspace's resource group.
module chargebackLines 'app/chargeback-lines.bicep' = {
  name: 'chargeback-lines-${resourceToken}'
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroupName)
  params: {
    workspaceName: monitoring.outputs.workspaceName
    ruleName: 'dcr-chargeback-lines-${resourceToken}'
    appPrincipalId: identity.outputs.principalId
    tags: tags
  }
}

module operations 'app/operations.bicep' = {
  name: 'operations'
  scope: rg
  params: {
    location: location
    tags: tags
    workspaceResourceId: monitoring.outputs.workspaceResourceId
    eventHubNamespaceName: eventHubs.outputs.name
    actionGroupName: 'ag-chargeback-${resourceToken}'
    rulePrefix: 'chargeback-${resourceToken}'
    alertEmails: alertEmails
  }
  dependsOn: [chargebackLines]
}

module finopsHubAccess 'app/finops-hub-access.bicep' = if (useFinopsHub) {
  name: 'finops-hub-access-${resourceToken}'
  scope: resourceGroup(useFinopsHub ? finopsHubParts[2] : subscription().subscriptionId, useFinopsHub ? finopsHubParts[4] : resourceGroupName)
  params: {
    storageAccountName: useFinopsHub ? finopsHubParts[8] : ''
    appPrincipalId: identity.outputs.principalId
  }
}

module eventHub 'app/eventhub.bicep' = {
  name: 'eventhub'
  scope: rg
  params: {
    namespaceName: eventHubs.outputs.name
    eventHubName: eventHubName
    consumerGroupName: consumerGroupName
    partitionCount: partitionCount
    messageRetentionInDays: messageRetentionInDays
    enableCapture: enableCapture
    captureStorageAccountId: storage.outputs.id
    captureContainerName: captureContainerName
  }
  dependsOn: [captureAccess]
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    deployIdentityId: deployIdentity.outputs.id
    authIdentityId: authIdentity.outputs.id
    authIdentityClientId: authIdentity.outputs.clientId
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageTableEndpoint: storage.outputs.tableEndpoint
    storageQueueEndpoint: storage.outputs.queueEndpoint
    reportQueueName: reportQueueName
    deploymentContainerName: deploymentContainerName
    hostBlobEndpoint: hostStorage.outputs.blobEndpoint
    hostQueueEndpoint: hostStorage.outputs.queueEndpoint
    hostTableEndpoint: hostStorage.outputs.tableEndpoint
    virtualNetworkSubnetId: privateNetworking ? network.outputs.appSubnetId : ''
    downloads: downloads
    llmLogScope: llmLogScope
    providerName: providerName
    pythonVersion: pythonVersion
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    eventHubFullyQualifiedNamespace: eventHubs.outputs.fullyQualifiedNamespace
    eventHubName: eventHub.outputs.name
    consumerGroupName: eventHub.outputs.consumerGroupName
    ledgerTableName: ledgerTableName
    deadLetterTableName: deadLetterTableName
    reconciliationTableName: reconciliationTableName
    reportsContainerName: reportsContainerName
    deadLetterContainerName: deadLetterContainerName
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceCustomerId
    metricNamespace: metricNamespace
    subscriptionDimension: subscriptionDimension
    reconcileSchedule: reconcileSchedule
    reconcileTolerancePercent: reconcileTolerancePercent
    reconcileLagHours: reconcileLagHours
    finalGraceDays: finalGraceDays
    priceSheetPath: priceSheetPath
    costCentersPath: costCentersPath
    finopsHubBlobEndpoint: useFinopsHub ? finopsHubAccess.outputs.blobEndpoint : ''
    finopsHubScope: finopsHubScope
    linesEndpoint: chargebackLines.outputs.endpoint
    linesRuleId: chargebackLines.outputs.ruleId
    budgetTableName: budgetTableName
    budgetsPath: budgetsPath
    budgetSchedule: budgetSchedule
    budgetEnforcement: enforceBudgets ? 'on' : 'off'
    apimResourceId: apimResourceId
    maxSuspensions: maxSuspensions
  }
  dependsOn: [rbac, workspaceAccess]
}

module budgetAlerts 'app/budget-alerts.bicep' = {
  name: 'budget-alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    ruleName: 'chargeback-budgets-${resourceToken}'
    workspaceResourceId: monitoring.outputs.workspaceResourceId
    actionGroupId: operations.outputs.actionGroupId
  }
}

// Enforcement suspends APIM subscriptions through Azure Resource Manager: the app's identity gets a
// custom role with only the three actions it needs, on that one instance.
module budgetEnforcer 'apim/budget-enforcer.bicep' = if (enforceBudgets) {
  name: 'budget-enforcer-${resourceToken}'
  scope: resourceGroup(apimResourceGroup)
  params: {
    apimServiceName: apimServiceName
    appPrincipalId: identity.outputs.principalId
  }
}

module entraApp 'app/entra-app.bicep' = {
  name: 'entra-app'
  scope: rg
  params: {
    uniqueName: 'chargeback-${resourceToken}'
    displayName: 'Token chargeback (${environmentName})'
    appHostName: api.outputs.defaultHostName
    authIdentityPrincipalId: authIdentity.outputs.principalId
  }
}

module auth 'app/auth.bicep' = {
  name: 'auth'
  scope: rg
  params: {
    siteName: api.outputs.name
    clientId: entraApp.outputs.clientId
    identifierUri: entraApp.outputs.identifierUri
    issuer: entraApp.outputs.issuer
  }
}

module apim 'apim/apim.bicep' = if (wireApim) {
  name: 'apim-${resourceToken}'
  scope: resourceGroup(apimResourceGroup)
  params: {
    apimServiceName: apimServiceName
    apiName: apimApiName
    eventHubNamespaceName: eventHubs.outputs.name
    eventHubNamespaceResourceGroupName: resourceGroupName
    eventHubName: eventHub.outputs.name
    eventHubFullyQualifiedNamespace: eventHubs.outputs.fullyQualifiedNamespace
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    applicationInsightsResourceGroupName: resourceGroupName
    workspaceResourceId: monitoring.outputs.workspaceResourceId
    logLlmMessages: logLlmMessages
    createDiagnosticSetting: createApimDiagnosticSetting
    monthlyTokenQuota: apimMonthlyTokenQuota
  }
}

// azd reads these into the environment; the postprovision hook and docs/deploy.md use them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output AZURE_FUNCTION_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output EVENTHUB_NAMESPACE_NAME string = eventHubs.outputs.name
output EVENTHUB_FULLY_QUALIFIED_NAMESPACE string = eventHubs.outputs.fullyQualifiedNamespace
output EVENTHUB_NAME string = eventHub.outputs.name
output EVENTHUB_CONSUMER_GROUP string = eventHub.outputs.consumerGroupName
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
output STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output STORAGE_QUEUE_ENDPOINT string = storage.outputs.queueEndpoint
output STORAGE_TABLE_ENDPOINT string = storage.outputs.tableEndpoint
output HOST_STORAGE_BLOB_ENDPOINT string = hostStorage.outputs.blobEndpoint
output HOST_STORAGE_QUEUE_ENDPOINT string = hostStorage.outputs.queueEndpoint
output HOST_STORAGE_TABLE_ENDPOINT string = hostStorage.outputs.tableEndpoint
output AZURE_AUTH_CLIENT_ID string = entraApp.outputs.clientId
output AZURE_AUTH_IDENTIFIER_URI string = entraApp.outputs.identifierUri
output AZURE_AUTH_SERVICE_PRINCIPAL_ID string = entraApp.outputs.servicePrincipalId
output AZURE_FUNCTION_APP_HOST string = api.outputs.defaultHostName
output LOG_ANALYTICS_WORKSPACE_ID string = monitoring.outputs.workspaceCustomerId
output LOG_ANALYTICS_WORKSPACE_RESOURCE_ID string = monitoring.outputs.workspaceResourceId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output RECONCILE_SCHEDULE string = reconcileSchedule
// The app settings that come from parameters, so that the hook writes what the app got.
output CHARGEBACK_METRIC_NAMESPACE string = metricNamespace
output CHARGEBACK_RECONCILE_TOLERANCE_PERCENT string = reconcileTolerancePercent
output CHARGEBACK_RECONCILE_LAG_HOURS string = string(reconcileLagHours)
output CHARGEBACK_FINAL_GRACE_DAYS string = string(finalGraceDays)
output CHARGEBACK_PRICE_SHEET string = priceSheetPath
output CHARGEBACK_COST_CENTERS string = costCentersPath
output CHARGEBACK_DOWNLOADS string = downloads
output CHARGEBACK_PROVIDER_NAME string = providerName
output CHARGEBACK_LLM_LOG_SCOPE string = llmLogScope
output CHARGEBACK_FINOPS_HUB_STORAGE string = useFinopsHub ? finopsHubAccess.outputs.blobEndpoint : ''
output CHARGEBACK_FINOPS_HUB_SCOPE string = finopsHubScope
output CHARGEBACK_LINES_ENDPOINT string = chargebackLines.outputs.endpoint
output CHARGEBACK_LINES_RULE_ID string = chargebackLines.outputs.ruleId
output CHARGEBACK_BUDGETS string = budgetsPath
output BUDGET_SCHEDULE string = budgetSchedule
output CHARGEBACK_APIM_RESOURCE_ID string = apimResourceId
output CHARGEBACK_ARM_ENDPOINT string = environment().resourceManager
output CHARGEBACK_MAX_SUSPENSIONS string = string(maxSuspensions)
output APIM_LOGGER_ID string = wireApim ? apim.outputs.loggerId : ''
