// The Event Hubs namespace the gateway writes usage events to. Shared access keys are
// disabled: APIM sends and the app receives with their managed identities. The namespace has a
// system-assigned identity only when Capture is on; Capture writes blobs with it.

param name string
param location string = resourceGroup().location
param tags object = {}
param enableCapture bool = false

@description('Turn public network access off (a private endpoint carries the traffic instead).')
param denyPublicNetworks bool = false

@description('Throughput units of the Standard namespace.')
@minValue(1)
@maxValue(40)
param capacity int = 1

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: capacity
  }
  identity: {
    type: enableCapture ? 'SystemAssigned' : 'None'
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: denyPublicNetworks ? 'Disabled' : 'Enabled'
    isAutoInflateEnabled: false
    kafkaEnabled: false
  }
}

// The namespace's host name, taken from the endpoint Azure reports (https://<host>:443/) rather
// than a hard-coded suffix, so sovereign clouds (servicebus.chinacloudapi.cn, ...) work as well.
var serviceBusHost = split(split(namespace.properties.serviceBusEndpoint, '/')[2], ':')[0]

output id string = namespace.id
output name string = namespace.name
output fullyQualifiedNamespace string = serviceBusHost
output principalId string = enableCapture ? namespace.identity.principalId : ''
