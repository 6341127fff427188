// Where committed report lines land in Log Analytics: the custom table ChargebackLines_CL, a data
// collection rule of kind Direct (its own logs ingestion endpoint, no data collection endpoint)
// whose stream Custom-ChargebackLines_CL carries the rows unchanged into the table, and the app's
// identity holding Monitoring Metrics Publisher on that rule only. The columns are one file,
// chargeback-lines.columns.json, loaded for both the table and the stream; the app's rows and the
// local stand-in of the ingestion endpoint (devtools/log_ingestion.py) are checked against it.
// Deployed into the workspace's resource group: the rule must be in the workspace's region.

param workspaceName string

@description('Name of the data collection rule.')
param ruleName string

@description('Principal id of the function app\'s user-assigned identity.')
param appPrincipalId string

param tags object = {}

@description('Days the table keeps its rows in the analytics tier (the workspace default when 0 or less).')
param retentionInDays int = 730

var tableName = 'ChargebackLines_CL'
var streamName = 'Custom-${tableName}'
var columns = loadJsonContent('chargeback-lines.columns.json')

// Built-in role definition id.
var monitoringMetricsPublisherRole = '3913510d-42f4-4e42-8a64-420c390055eb'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource table 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = {
  parent: workspace
  name: tableName
  properties: {
    plan: 'Analytics'
    retentionInDays: retentionInDays > 0 ? retentionInDays : null
    totalRetentionInDays: retentionInDays > 0 ? retentionInDays : null
    schema: {
      name: tableName
      // The table spells the time type dateTime; the stream datetime.
      columns: [for column in columns: {
        name: column.name
        type: column.type == 'datetime' ? 'dateTime' : column.type
      }]
    }
  }
}

resource rule 'Microsoft.Insights/dataCollectionRules@2023-03-11' = {
  name: ruleName
  location: workspace.location
  tags: tags
  kind: 'Direct'
  properties: {
    streamDeclarations: {
      '${streamName}': {
        columns: columns
      }
    }
    destinations: {
      logAnalytics: [
        {
          name: 'workspace'
          workspaceResourceId: workspace.id
        }
      ]
    }
    dataFlows: [
      {
        streams: [streamName]
        destinations: ['workspace']
        transformKql: 'source'
        outputStream: streamName
      }
    ]
  }
  dependsOn: [table]
}

resource appPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(rule.id, appPrincipalId, monitoringMetricsPublisherRole)
  scope: rule
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

@description('CHARGEBACK_LINES_ENDPOINT: the rule\'s own logs ingestion endpoint.')
output endpoint string = rule.properties.endpoints.logsIngestion
@description('CHARGEBACK_LINES_RULE_ID: the rule\'s immutable id.')
output ruleId string = rule.properties.immutableId
output tableName string = tableName
