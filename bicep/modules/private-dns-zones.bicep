// Private DNS zones (global) and their links to the gateway VNet. One zone per name per VNet: the blob zone
// is shared by the storage blob private endpoint and the Azure Monitor private link scope endpoint.

@description('Zone names, e.g. privatelink.blob.core.windows.net.')
param zoneNames array

@description('Resource ID of the virtual network to link.')
param vnetId string

@description('Name of the virtual network (used in the link names).')
param vnetName string

@description('Tags for every resource.')
param tags object = {}

resource zones 'Microsoft.Network/privateDnsZones@2024-06-01' = [for zoneName in zoneNames: {
  name: zoneName
  location: 'global'
  tags: tags
}]

resource links 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [for (zoneName, i) in zoneNames: {
  parent: zones[i]
  name: 'link-${vnetName}'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnetId
    }
  }
}]

output zoneIds array = [for (zoneName, i) in zoneNames: zones[i].id]
