// The Log Analytics workspace that holds AppMetrics (APIM's token metric, the second source the
// reconciliation compares against) and the app's own workspace-based Application Insights.
// Pass existingLogAnalyticsWorkspaceId to use the workspace APIM already reports to.

param location string = resourceGroup().location
param tags object = {}
param logAnalyticsName string
param applicationInsightsName string

@description('Resource id of an existing Log Analytics workspace; empty creates one.')
param existingLogAnalyticsWorkspaceId string = ''

var useExisting = !empty(existingLogAnalyticsWorkspaceId)
var existingParts = split(existingLogAnalyticsWorkspaceId, '/')

resource newWorkspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = if (!useExisting) {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    retentionInDays: 30
    sku: {
      name: 'PerGB2018'
    }
  }
}

resource existingWorkspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = if (useExisting) {
  name: useExisting ? last(existingParts) : logAnalyticsName
  scope: resourceGroup(useExisting ? existingParts[2] : subscription().subscriptionId, useExisting ? existingParts[4] : resourceGroup().name)
}

var workspaceResourceId = useExisting ? existingWorkspace.id : newWorkspace.id

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspaceResourceId
    DisableLocalAuth: true
    // Keep the dimensions of custom metrics (the token metric's Subscription ID): without it
    // Azure Monitor drops them. The portal's "Custom metrics: With dimensions" switch; the
    // property is not in the published type of this API version, hence the suppression.
    #disable-next-line BCP037
    CustomMetricsOptedInType: 'WithDimensions'
  }
}

output workspaceResourceId string = workspaceResourceId
output workspaceName string = useExisting ? existingWorkspace.name : newWorkspace.name
output workspaceCustomerId string = useExisting ? existingWorkspace.properties.customerId : newWorkspace.properties.customerId
output applicationInsightsId string = applicationInsights.id
output applicationInsightsName string = applicationInsights.name
output applicationInsightsConnectionString string = applicationInsights.properties.ConnectionString
