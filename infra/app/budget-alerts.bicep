// Budget alerts: a scheduled query rule on the lines the budget evaluation logs (a threshold
// crossed, a forecast that reaches the budget, the breaker refusing to suspend), sent to the
// operations' action group (app/operations.bicep), which mails them. The app sends no mail
// itself: it logs each crossing once, Azure Monitor tells people.

param location string = resourceGroup().location
param tags object = {}

@description('Name of the scheduled query rule.')
param ruleName string

@description('Resource id of the Log Analytics workspace the app\'s Application Insights writes AppTraces to.')
param workspaceResourceId string

@description('Resource id of the action group that mails the alerts (operations.bicep); empty: the rule fires without one.')
param actionGroupId string = ''

var notify = !empty(actionGroupId)

// The query is a file of its own, so the tests check exactly this text with the Kusto parser.
var budgetQuery = loadTextContent('budget-alerts.kql')

// Evaluated every 5 minutes over the last 30, so a line that reaches the workspace late is
// still seen; the alert is stateful (autoMitigate), so a line seen in several windows alerts
// once per dimension combination.
resource budgetRule 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: ruleName
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Chargeback budget alerts'
    description: 'A budget crossed a threshold, its forecast reached the budget, or the breaker refused to suspend.'
    severity: 2
    enabled: true
    evaluationFrequency: 'PT5M'
    windowSize: 'PT30M'
    scopes: [workspaceResourceId]
    targetResourceTypes: ['Microsoft.OperationalInsights/workspaces']
    autoMitigate: true
    // Created before any row reaches the workspace, the query may name a table it has no
    // rows of yet (AzureMetrics, AppTraces); the Kusto parser checks every query in the tests.
    skipQueryValidation: true
    criteria: {
      allOf: [
        {
          query: budgetQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            { name: 'Event', operator: 'Include', values: ['*'] }
            { name: 'Period', operator: 'Include', values: ['*'] }
            { name: 'Scope', operator: 'Include', values: ['*'] }
            { name: 'BudgetId', operator: 'Include', values: ['*'] }
            { name: 'Threshold', operator: 'Include', values: ['*'] }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: notify ? { actionGroups: [actionGroupId] } : {}
  }
}

output ruleId string = budgetRule.id
