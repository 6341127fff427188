// What operators look at: two workbooks over the workspace (Chargeback: spend from the published
// report lines; Pipeline health: the app's metrics and log lines), the alert rules, each with the
// action group, and the Event Hubs namespace's metrics sent to the workspace so that an alert can
// compare the hub's incoming messages with what the app received. Every query is a file of its
// own (alerts/*.kql, workbooks/*.workbook.json), so the tests check exactly this text with
// Microsoft's Kusto parser against the tables' schemas.

param location string = resourceGroup().location
param tags object = {}

@description('Resource id of the Log Analytics workspace holding AppMetrics, AppTraces, AppRequests, AzureMetrics and ChargebackLines_CL.')
param workspaceResourceId string

@description('Name of the Event Hubs namespace whose metrics go to the workspace.')
param eventHubNamespaceName string

@description('Name of the action group.')
param actionGroupName string

@description('Prefix of the alert rules\' names.')
param rulePrefix string

@description('Who is mailed when an alert fires: the action group\'s email receivers, set to this list at every provision; empty: a group no one receives yet.')
param alertEmails array = []

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'chargeback'
    enabled: true
    emailReceivers: [for (email, index) in alertEmails: {
      name: 'operator-mail-${index}'
      emailAddress: email
      useCommonAlertSchema: true
    }]
  }
}

resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespaceName
}

resource hubMetrics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'chargeback-metrics-to-workspace'
  scope: eventHubNamespace
  properties: {
    workspaceId: workspaceResourceId
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

// Each rule: its query file, how often it runs and over how long, its severity, and the columns
// that split it into one alert each (autoMitigate resolves an alert once its rows are gone).
var rules = [
  {
    name: 'ingestion-stopped'
    displayName: 'Chargeback: ingestion stopped while the hub has incoming messages'
    query: loadTextContent('alerts/ingestion-stopped.kql')
    severity: 1
    frequency: 'PT5M'
    window: 'PT30M'
    dimensions: []
  }
  {
    name: 'dead-letters-rising'
    displayName: 'Chargeback: dead letters rising'
    query: loadTextContent('alerts/dead-letters-rising.kql')
    severity: 2
    frequency: 'PT15M'
    window: 'P1D'
    dimensions: ['Reason']
  }
  {
    name: 'report-job-failed'
    displayName: 'Chargeback: a report job failed or a month was not queued'
    query: loadTextContent('alerts/report-job-failed.kql')
    severity: 2
    frequency: 'PT15M'
    window: 'PT1H'
    dimensions: ['Period', 'Status']
  }
  {
    name: 'ledger-short'
    displayName: 'Chargeback: reconciliation found the ledger short of Azure Monitor'
    query: loadTextContent('alerts/ledger-short.kql')
    severity: 2
    frequency: 'PT1H'
    window: 'P1D'
    dimensions: ['Period', 'Status']
  }
  {
    name: 'final-overdue'
    displayName: 'Chargeback: a final report was not produced by the end of its grace period'
    query: loadTextContent('alerts/final-overdue.kql')
    severity: 1
    frequency: 'PT1H'
    window: 'P2D'
    dimensions: ['Period', 'Problem']
  }
  {
    name: 'llm-log-days-failed'
    displayName: 'Chargeback: LLM-log days failing'
    query: loadTextContent('alerts/llm-log-days-failed.kql')
    severity: 3
    frequency: 'PT1H'
    window: 'P1D'
    dimensions: ['Day', 'Kind']
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for rule in rules: {
  name: '${rulePrefix}-${rule.name}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: rule.displayName
    description: 'What it means and what to do: docs/operations.md.'
    severity: rule.severity
    enabled: true
    evaluationFrequency: rule.frequency
    windowSize: rule.window
    scopes: [workspaceResourceId]
    targetResourceTypes: ['Microsoft.OperationalInsights/workspaces']
    autoMitigate: true
    // Created before any row reaches the workspace, the query may name a table it has no
    // rows of yet (AzureMetrics, AppTraces); the Kusto parser checks every query in the tests.
    skipQueryValidation: true
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [for dimension in rule.dimensions: {
            name: dimension
            operator: 'Include'
            values: ['*']
          }]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: { actionGroups: [actionGroup.id] }
  }
  dependsOn: [hubMetrics]
}]

// Stable names (guid of the resource group and the workbook's role), so that azd provision
// updates the same workbooks instead of adding new ones.
var workbooks = [
  {
    key: 'chargeback'
    displayName: 'Chargeback'
    content: loadJsonContent('workbooks/chargeback.workbook.json')
  }
  {
    key: 'pipeline-health'
    displayName: 'Chargeback pipeline health'
    content: loadJsonContent('workbooks/pipeline-health.workbook.json')
  }
]

resource workbookResources 'Microsoft.Insights/workbooks@2023-06-01' = [for workbook in workbooks: {
  name: guid(resourceGroup().id, 'chargeback-workbook', workbook.key)
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: workbook.displayName
    category: 'workbook'
    sourceId: workspaceResourceId
    serializedData: string(workbook.content)
  }
}]

output actionGroupId string = actionGroup.id
output workbookIds array = [for (workbook, index) in workbooks: workbookResources[index].id]
