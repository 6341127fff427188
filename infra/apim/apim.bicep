// Wires an existing API Management instance to the pipeline:
//   - the Event Hub logger (signing in with the instance's system-assigned identity, which is
//     granted Azure Event Hubs Data Sender on the usage hub only) and the two policy fragments the
//     Azure OpenAI API's policy includes:
//       <include-fragment fragment-id="chargeback-token-metric" />  in inbound
//       <include-fragment fragment-id="chargeback-usage-event" />   in outbound
//   - the token metric's prerequisites: an Application Insights logger (again with the
//     instance's identity, granted Monitoring Metrics Publisher on the component) and the API's
//     `applicationinsights` diagnostic with custom metrics turned on, so that AppMetrics rows
//     reach the workspace the reconciliation reads;
//   - the LLM logs: the instance's `azuremonitor` logger, the API's `azuremonitor` diagnostic with
//     LLM logging on (token counts only: prompt and completion messages are off unless
//     logLlmMessages is set) and, unless the instance already has one to this workspace, a
//     diagnostic setting that sends GatewayLlmLogs and GatewayLogs to the workspace as
//     resource-specific tables (ApiManagementGatewayLlmLog, ApiManagementGatewayLogs).
// Deployed into the API Management instance's resource group; the instance must have its
// system-assigned identity turned on.

@description('Name of the existing API Management instance.')
param apimServiceName string

@minLength(1)
@description('Name (id) of the Azure OpenAI API in that instance whose calls are billed.')
param apiName string

param eventHubNamespaceName string
param eventHubNamespaceResourceGroupName string
param eventHubName string

@description('Host name of the Event Hubs namespace, as the namespace reports it.')
param eventHubFullyQualifiedNamespace string

@description('Resource id and connection string of the Application Insights component the token metric goes to.')
param applicationInsightsId string
param applicationInsightsConnectionString string

@description('Resource group of that component, where the logger\'s role is granted.')
param applicationInsightsResourceGroupName string

@description('Resource id of the Log Analytics workspace that receives the gateway and LLM logs.')
param workspaceResourceId string

@description('Also log prompt and completion messages (off: billing needs token counts only).')
param logLlmMessages bool = false

@description('Create the diagnostic setting that sends GatewayLogs and GatewayLlmLogs to the workspace. False when one of the instance\'s settings already sends both there as resource-specific tables: Azure Monitor refuses a second setting for the same category and destination ("Data sink ... is already used").')
param createDiagnosticSetting bool = true

@minValue(0)
@description('Tokens each APIM subscription may use a month before the gateway answers 403; 0 installs no quota.')
param monthlyTokenQuota int = 0

// The outbound fragment names this logger in its log-to-eventhub policy; policy attributes
// cannot read parameters, so the two must change together.
var loggerName = 'chargeback-usage-logger'
var insightsLoggerName = 'chargeback-insights-logger'

// Messages of up to this size are logged in one row; larger ones are split over several rows.
var llmMessageBytes = 32768
var llmMessages = logLlmMessages
  ? {
      requests: { messages: 'all', maxSizeInBytes: llmMessageBytes }
      responses: { messages: 'all', maxSizeInBytes: llmMessageBytes }
    }
  : {}

resource apimService 'Microsoft.ApiManagement/service@2024-05-01' existing = {
  name: apimServiceName
}

resource api 'Microsoft.ApiManagement/service/apis@2024-05-01' existing = {
  parent: apimService
  name: apiName
}

// The logger diagnostics name to write to Azure Monitor. Instances get it when Azure Monitor
// logging is first set up; declaring it (a PUT of the same type, without credentials) creates it
// where it is missing and leaves it as it is elsewhere, so a fresh instance deploys too.
resource azureMonitorLogger 'Microsoft.ApiManagement/service/loggers@2024-05-01' = {
  parent: apimService
  name: 'azuremonitor'
  properties: {
    loggerType: 'azureMonitor'
    isBuffered: true
  }
}

module sender 'eventhub-sender.bicep' = {
  name: 'apim-eventhub-sender-${uniqueString(apimService.id)}'
  scope: resourceGroup(eventHubNamespaceResourceGroupName)
  params: {
    eventHubNamespaceName: eventHubNamespaceName
    eventHubName: eventHubName
    apimPrincipalId: apimService.identity.principalId
  }
}

module insightsPublisher 'insights-publisher.bicep' = {
  name: 'apim-insights-publisher-${uniqueString(apimService.id)}'
  scope: resourceGroup(applicationInsightsResourceGroupName)
  params: {
    applicationInsightsName: last(split(applicationInsightsId, '/'))
    apimPrincipalId: apimService.identity.principalId
  }
}

resource usageLogger 'Microsoft.ApiManagement/service/loggers@2024-05-01' = {
  parent: apimService
  name: loggerName
  properties: {
    loggerType: 'azureEventHub'
    description: 'Token usage events for the chargeback ledger'
    isBuffered: true
    credentials: {
      name: eventHubName
      endpointAddress: eventHubFullyQualifiedNamespace
      identityClientId: 'SystemAssigned'
    }
  }
  dependsOn: [sender]
}

// The component has local authentication off, so the logger signs in with the instance's
// identity; the connection string only says where to send (it carries no secret then).
resource insightsLogger 'Microsoft.ApiManagement/service/loggers@2024-05-01' = {
  parent: apimService
  name: insightsLoggerName
  properties: {
    loggerType: 'applicationInsights'
    description: 'Token metric for the chargeback reconciliation'
    resourceId: applicationInsightsId
    isBuffered: true
    credentials: {
      connectionString: applicationInsightsConnectionString
      identityClientId: 'SystemAssigned'
    }
  }
  dependsOn: [insightsPublisher]
}

// The token metric fragment emits custom metrics; they reach Application Insights only through
// an API diagnostic with metrics on. Every call is logged (sampling 100%) as the API Management
// guide for this diagnostic recommends; request and response bodies are not.
resource insightsDiagnostic 'Microsoft.ApiManagement/service/apis/diagnostics@2024-10-01-preview' = {
  parent: api
  name: 'applicationinsights'
  properties: {
    loggerId: insightsLogger.id
    metrics: true
    alwaysLog: 'allErrors'
    sampling: {
      samplingType: 'fixed'
      percentage: 100
    }
    httpCorrelationProtocol: 'W3C'
    verbosity: 'error'
    logClientIp: false
  }
}

// LLM logging: token counts per call (streamed or not) in ApiManagementGatewayLlmLog. Prompt
// and completion messages stay off by default: billing does not need them, they hold whatever
// users typed (personal and confidential data) and they multiply the workspace's ingestion.
resource monitorDiagnostic 'Microsoft.ApiManagement/service/apis/diagnostics@2024-10-01-preview' = {
  parent: api
  name: 'azuremonitor'
  properties: {
    loggerId: azureMonitorLogger.id
    alwaysLog: 'allErrors'
    sampling: {
      samplingType: 'fixed'
      percentage: 100
    }
    logClientIp: false
    largeLanguageModel: union({ logs: 'enabled' }, llmMessages)
  }
}

resource gatewayLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (createDiagnosticSetting) {
  name: 'chargeback-gateway-logs'
  scope: apimService
  properties: {
    workspaceId: workspaceResourceId
    logAnalyticsDestinationType: 'Dedicated'
    logs: [
      {
        category: 'GatewayLogs'
        enabled: true
      }
      {
        category: 'GatewayLlmLogs'
        enabled: true
      }
    ]
  }
}

// The fragment files are well-formed XML: the policy expressions in them are XML-escaped
// (&lt; &gt; &amp;), which is the 'xml' format; 'rawxml' would take the escapes literally.
resource tokenMetricFragment 'Microsoft.ApiManagement/service/policyFragments@2024-05-01' = {
  parent: apimService
  name: 'chargeback-token-metric'
  properties: {
    description: 'Emits the token metric per APIM subscription: the second source of reconciliation.'
    format: 'xml'
    value: loadTextContent('fragments/chargeback-token-metric.xml')
  }
}

resource usageEventFragment 'Microsoft.ApiManagement/service/policyFragments@2024-05-01' = {
  parent: apimService
  name: 'chargeback-usage-event'
  properties: {
    description: 'Sends one chargeback.usage/v1 event per successful call to the usage hub.'
    format: 'xml'
    value: loadTextContent('fragments/chargeback-usage-event.xml')
  }
  dependsOn: [usageLogger]
}

// Optional: a monthly token quota per APIM subscription, a hard stop at the gateway to pair with the
// budgets. Installed (with the named value it reads) only when a quota is given; the Azure OpenAI
// API's policy then includes <include-fragment fragment-id="chargeback-token-quota" /> in inbound.
resource tokenQuotaValue 'Microsoft.ApiManagement/service/namedValues@2024-05-01' = if (monthlyTokenQuota > 0) {
  parent: apimService
  name: 'chargeback-monthly-token-quota'
  properties: {
    displayName: 'chargeback-monthly-token-quota'
    value: string(monthlyTokenQuota)
    secret: false
  }
}

resource tokenQuotaFragment 'Microsoft.ApiManagement/service/policyFragments@2024-05-01' = if (monthlyTokenQuota > 0) {
  parent: apimService
  name: 'chargeback-token-quota'
  properties: {
    description: 'At most chargeback-monthly-token-quota tokens per APIM subscription a month (403 past it).'
    format: 'xml'
    value: loadTextContent('fragments/chargeback-token-quota.xml')
  }
  dependsOn: [tokenQuotaValue]
}

output loggerId string = usageLogger.id
output insightsLoggerId string = insightsLogger.id
output tokenMetricFragmentId string = tokenMetricFragment.id
output usageEventFragmentId string = usageEventFragment.id
