// Log Analytics Reader on the workspace that holds AppMetrics: the app's identity queries it to
// reconcile, the deploying user to look at the same numbers. Deployed into the workspace's own
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

// Built-in role definition id.
var logAnalyticsReaderRole = '73c42c96-874c-492b-b04d-ab87d138a893'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource appWorkspaceReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, appPrincipalId, logAnalyticsReaderRole)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', logAnalyticsReaderRole)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource userWorkspaceReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(workspace.id, userPrincipalId, logAnalyticsReaderRole)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', logAnalyticsReaderRole)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}
