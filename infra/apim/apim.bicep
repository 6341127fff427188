// Wires an existing API Management instance to the usage hub: grants its system-assigned
// identity Azure Event Hubs Data Sender, creates the Event Hub logger that signs in with that
// identity, and installs the two policy fragments the Azure OpenAI API's policy includes:
//   <include-fragment fragment-id="chargeback-token-metric" />  in inbound
//   <include-fragment fragment-id="chargeback-usage-event" />   in outbound
// Deployed into the APIM instance's resource group; the instance must have its system-assigned
// identity turned on.

@description('Name of the existing API Management instance.')
param apimServiceName string

param eventHubNamespaceName string
param eventHubNamespaceResourceGroupName string
param eventHubName string

// The outbound fragment names this logger in its log-to-eventhub policy; policy attributes
// cannot read parameters, so the two must change together.
var loggerName = 'chargeback-usage-logger'

resource apimService 'Microsoft.ApiManagement/service@2024-05-01' existing = {
  name: apimServiceName
}

module sender 'eventhub-sender.bicep' = {
  name: 'apim-eventhub-sender-${uniqueString(apimService.id)}'
  scope: resourceGroup(eventHubNamespaceResourceGroupName)
  params: {
    eventHubNamespaceName: eventHubNamespaceName
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
      endpointAddress: '${eventHubNamespaceName}.servicebus.windows.net'
      identityClientId: 'SystemAssigned'
    }
  }
  dependsOn: [sender]
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

output loggerId string = usageLogger.name
output tokenMetricFragmentId string = tokenMetricFragment.name
output usageEventFragmentId string = usageEventFragment.name
