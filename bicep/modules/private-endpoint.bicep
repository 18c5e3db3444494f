// One private endpoint with its DNS zone group: every endpoint registers its A records in the given zones.
// A private endpoint must be in the region of its virtual network: callers pass the VNet's region as location,
// whatever the region of the target resource (tests/infra checks this for every endpoint).

@description('Private endpoint name.')
param name string

@description('Azure region of the endpoint: the region of its virtual network (not of the target resource).')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Subnet for the endpoint NIC.')
param subnetId string

@description('Resource ID of the target resource.')
param privateLinkServiceId string

@description('Target sub-resource (group id): blob, queue, table, file, vault, account, azuremonitor, sites, Gateway.')
param groupId string

@description('Resource IDs of the private DNS zones for this endpoint.')
param privateDnsZoneIds array

@description('Application security groups of the endpoint NIC (lets NSG rules target this endpoint only).')
param applicationSecurityGroupIds array = []

resource privateEndpoint 'Microsoft.Network/privateEndpoints@2025-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetId
    }
    customNetworkInterfaceName: 'nic-${name}'
    applicationSecurityGroups: [for asgId in applicationSecurityGroupIds: {
      id: asgId
    }]
    privateLinkServiceConnections: [
      {
        name: name
        properties: {
          privateLinkServiceId: privateLinkServiceId
          groupIds: [
            groupId
          ]
        }
      }
    ]
  }

  resource zoneGroup 'privateDnsZoneGroups@2025-05-01' = {
    name: 'default'
    properties: {
      privateDnsZoneConfigs: [for (zoneId, i) in privateDnsZoneIds: {
        name: 'zone-${i}'
        properties: {
          privateDnsZoneId: zoneId
        }
      }]
    }
  }
}

output id string = privateEndpoint.id
output name string = privateEndpoint.name
