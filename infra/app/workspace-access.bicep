// Read access to the three tables the app queries, and to nothing else in the workspace, which
// may be shared with other teams: AppMetrics (reconciliation), ApiManagementGatewayLlmLog and
// ApiManagementGatewayLogs (the LLM-log usage source). Log Analytics Data Reader lets its holder
// run queries (query/read) and read table data (tables/data/read); the condition limits the data
// action to those tables ("Granular RBAC" in Log Analytics). The app's identity queries them; the
// deploying user gets the same to look at the same rows. Deployed into the workspace's own
// resource group, which is not this deployment's when an existing workspace is used.
// Each assignment is named guid(workspace, principal, role), so a second deployment rewrites the
// same assignment. The one that can collide is the deploying user's on an existing workspace
// where the user already holds the role under another name: ARM then answers
// RoleAssignmentExists, and main.bicep's grantPrincipalWorkspaceAccess=false skips it.

param workspaceName string

@description('Principal id of the function app\'s user-assigned identity.')
param appPrincipalId string

@description('Principal id of the deploying user or pipeline; empty grants nothing.')
param userPrincipalId string = ''

@allowed(['User', 'ServicePrincipal', 'Group'])
param userPrincipalType string = 'User'

@description('The tables whose rows the holders may read.')
param readableTables string[] = [
  'AppMetrics'
  'ApiManagementGatewayLlmLog'
  'ApiManagementGatewayLogs'
]

// Built-in role definition id.
var logAnalyticsDataReaderRole = '3b03c2da-16b3-4a49-8834-0f8130efdd3b'

// Any action but reading table data passes; reading table data passes only for those tables.
var tableCondition = '((!(ActionMatches{\'Microsoft.OperationalInsights/workspaces/tables/data/read\'})) OR (${join(map(readableTables, table => '@Resource[Microsoft.OperationalInsights/workspaces/tables:name] StringEquals \'${table}\''), ' OR ')}))'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource appTableReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, appPrincipalId, logAnalyticsDataReaderRole)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', logAnalyticsDataReaderRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    condition: tableCondition
    conditionVersion: '2.0'
  }
}

resource userTableReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(workspace.id, userPrincipalId, logAnalyticsDataReaderRole)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', logAnalyticsDataReaderRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
    condition: tableCondition
    conditionVersion: '2.0'
  }
}
