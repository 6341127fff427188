// Private networking (main.bicep's privateNetworking): a virtual network with a subnet the
// function app integrates with (delegated to Microsoft.App/environments, as Flex Consumption
// requires) and a subnet for private endpoints to both storage accounts (blob, queue, table)
// and the Event Hubs namespace, each with the private DNS zone that resolves it inside the
// network. The accounts and the namespace turn public network access off in that mode.

param name string
param location string = resourceGroup().location
param tags object = {}

param dataStorageAccountId string
param hostStorageAccountId string
param eventHubNamespaceId string

@description('Host name of the Event Hubs namespace; its suffix names the private DNS zone.')
param eventHubFullyQualifiedNamespace string

param addressPrefix string = '10.40.0.0/16'
param appSubnetPrefix string = '10.40.1.0/24'
param endpointSubnetPrefix string = '10.40.2.0/24'

var eventHubsSuffix = substring(eventHubFullyQualifiedNamespace, indexOf(eventHubFullyQualifiedNamespace, '.') + 1)

// One private endpoint per service and sub-resource, with the zone that resolves it (the zone
// names of "Azure Private Endpoint private DNS zone values"). The data account's queue carries
// the report jobs (ChargebackStorage__queueServiceUri, the generate_report trigger).
var endpoints = [
  { name: 'data-blob', target: dataStorageAccountId, group: 'blob', zone: 'privatelink.blob.${environment().suffixes.storage}' }
  { name: 'data-queue', target: dataStorageAccountId, group: 'queue', zone: 'privatelink.queue.${environment().suffixes.storage}' }
  { name: 'data-table', target: dataStorageAccountId, group: 'table', zone: 'privatelink.table.${environment().suffixes.storage}' }
  { name: 'host-blob', target: hostStorageAccountId, group: 'blob', zone: 'privatelink.blob.${environment().suffixes.storage}' }
  { name: 'host-queue', target: hostStorageAccountId, group: 'queue', zone: 'privatelink.queue.${environment().suffixes.storage}' }
  { name: 'host-table', target: hostStorageAccountId, group: 'table', zone: 'privatelink.table.${environment().suffixes.storage}' }
  { name: 'eventhubs', target: eventHubNamespaceId, group: 'namespace', zone: 'privatelink.${eventHubsSuffix}' }
]

var zoneNames = union(map(endpoints, endpoint => endpoint.zone), [])

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [addressPrefix]
    }
    subnets: [
      {
        name: 'app'
        properties: {
          addressPrefix: appSubnetPrefix
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: 'private-endpoints'
        properties: {
          addressPrefix: endpointSubnetPrefix
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }

  resource appSubnet 'subnets' existing = {
    name: 'app'
  }

  resource endpointSubnet 'subnets' existing = {
    name: 'private-endpoints'
  }
}

resource zones 'Microsoft.Network/privateDnsZones@2020-06-01' = [
  for zone in zoneNames: {
    name: zone
    location: 'global'
    tags: tags
  }
]

resource zoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [
  for (zone, i) in zoneNames: {
    parent: zones[i]
    name: '${name}-link'
    location: 'global'
    properties: {
      registrationEnabled: false
      virtualNetwork: {
        id: vnet.id
      }
    }
  }
]

resource privateEndpoints 'Microsoft.Network/privateEndpoints@2023-11-01' = [
  for endpoint in endpoints: {
    name: '${name}-${endpoint.name}'
    location: location
    tags: tags
    properties: {
      subnet: {
        id: vnet::endpointSubnet.id
      }
      privateLinkServiceConnections: [
        {
          name: endpoint.name
          properties: {
            privateLinkServiceId: endpoint.target
            groupIds: [endpoint.group]
          }
        }
      ]
    }
  }
]

resource zoneGroups 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2023-11-01' = [
  for (endpoint, i) in endpoints: {
    parent: privateEndpoints[i]
    name: 'default'
    properties: {
      privateDnsZoneConfigs: [
        {
          name: replace(endpoint.zone, '.', '-')
          properties: {
            privateDnsZoneId: resourceId('Microsoft.Network/privateDnsZones', endpoint.zone)
          }
        }
      ]
    }
    dependsOn: [zones]
  }
]

output appSubnetId string = vnet::appSubnet.id
output endpointGroups string[] = map(endpoints, endpoint => '${endpoint.name}:${endpoint.group}')
