// Virtual network for the gateway: the function app's outbound integration subnet, the private-endpoint
// subnet and, when enabled, the jumpbox, Azure Bastion and API Management subnets.
// NSGs: the private-endpoint subnet accepts traffic only from the app subnet (and jumpbox/APIM subnets
// when those exist, and the allowed caller prefixes for the function app's own endpoint); private-endpoint
// network policies are Enabled so those NSG rules apply to PE traffic. Outbound from the app subnet is limited
// to the VNet and the service tags the app needs (restrictEgress).

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Name suffix shared by the resources of this deployment.')
param resourceToken string

@description('Virtual network name (computed in main.bicep, so names never depend on module outputs).')
param vnetName string

@description('Address space of the virtual network.')
param vnetAddressPrefix string = '10.20.0.0/16'

@description('App-integration subnet (delegated to Microsoft.Web/serverFarms). EP uses one IP per instance, doubled during scale operations: size for 2x the maximum burst.')
param appSubnetPrefix string = '10.20.0.0/24'

@description('Private-endpoint subnet.')
param privateEndpointSubnetPrefix string = '10.20.1.0/24'

@description('Jumpbox subnet (only when enableJumpbox).')
param jumpboxSubnetPrefix string = '10.20.2.0/27'

@description('AzureBastionSubnet (only when enableJumpbox); /26 or larger.')
param bastionSubnetPrefix string = '10.20.3.0/26'

@description('API Management outbound-integration subnet (only when enableApim), delegated to Microsoft.Web/serverFarms.')
param apimSubnetPrefix string = '10.20.4.0/27'

@description('Create the jumpbox and Bastion subnets.')
param enableJumpbox bool = false

@description('Create the API Management subnet.')
param enableApim bool = false

@description('Address prefixes (peered VNets, VPN/ExpressRoute ranges) allowed to call the function app through its private endpoint on 443. Only the endpoint carrying the sites application security group is opened to them, not storage, Key Vault or Azure OpenAI.')
param privateInboundAllowedSourcePrefixes array = []

@description('Limit outbound traffic of the app subnet to the VNet and the service tags AzureActiveDirectory and AzureMonitor (plus egressAllowedAddressPrefixes); everything else to the Internet is denied.')
param restrictEgress bool = true

@description('Extra destination prefixes the app subnet may reach on 443 when restrictEgress is true (e.g. a package mirror for remote builds).')
param egressAllowedAddressPrefixes array = []

var appSubnetName = 'snet-app'
var privateEndpointSubnetName = 'snet-private-endpoints'
var jumpboxSubnetName = 'snet-jumpbox'
var bastionSubnetName = 'AzureBastionSubnet'
var apimSubnetName = 'snet-apim'

// Sources allowed to reach the private endpoints on 443 (HTTPS) besides the app subnet.
var extraHttpsSources = concat(enableJumpbox ? [
  jumpboxSubnetPrefix
] : [], enableApim ? [
  apimSubnetPrefix
] : [])

resource natPublicIp 'Microsoft.Network/publicIPAddresses@2025-05-01' = {
  name: 'pip-nat-${resourceToken}'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
    publicIPAddressVersion: 'IPv4'
  }
}

// Explicit egress for the route-all app subnet (Entra ID metadata/keys for token validation) and the jumpbox:
// subnets below set defaultOutboundAccess false, so without the NAT gateway they would have no internet egress.
resource natGateway 'Microsoft.Network/natGateways@2025-05-01' = {
  name: 'ng-${resourceToken}'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    idleTimeoutInMinutes: 4
    publicIpAddresses: [
      {
        id: natPublicIp.id
      }
    ]
  }
}

// Marks the NIC of the function app's inbound private endpoint, so NSG rules can open it (and only it) to callers.
resource asgSites 'Microsoft.Network/applicationSecurityGroups@2025-05-01' = {
  name: 'asg-sites-${resourceToken}'
  location: location
  tags: tags
}

// App subnet egress: the VNet (private endpoints), Entra ID (token metadata and signing keys, managed-identity
// token exchange for Easy Auth and in-process validation) and Azure Monitor; the rest of the Internet is denied.
var egressRules = restrictEgress ? concat([
  {
    name: 'AllowVnetOutbound'
    properties: {
      priority: 100
      direction: 'Outbound'
      access: 'Allow'
      protocol: '*'
      sourceAddressPrefix: appSubnetPrefix
      sourcePortRange: '*'
      destinationAddressPrefix: 'VirtualNetwork'
      destinationPortRange: '*'
    }
  }
  {
    name: 'AllowEntraIdOutbound'
    properties: {
      priority: 110
      direction: 'Outbound'
      access: 'Allow'
      protocol: 'Tcp'
      sourceAddressPrefix: appSubnetPrefix
      sourcePortRange: '*'
      destinationAddressPrefix: 'AzureActiveDirectory'
      destinationPortRange: '443'
    }
  }
  {
    name: 'AllowAzureMonitorOutbound'
    properties: {
      priority: 120
      direction: 'Outbound'
      access: 'Allow'
      protocol: 'Tcp'
      sourceAddressPrefix: appSubnetPrefix
      sourcePortRange: '*'
      destinationAddressPrefix: 'AzureMonitor'
      destinationPortRange: '443'
    }
  }
], empty(egressAllowedAddressPrefixes) ? [] : [
  {
    name: 'AllowExtraHttpsOutbound'
    properties: {
      priority: 130
      direction: 'Outbound'
      access: 'Allow'
      protocol: 'Tcp'
      sourceAddressPrefix: appSubnetPrefix
      sourcePortRange: '*'
      destinationAddressPrefixes: egressAllowedAddressPrefixes
      destinationPortRange: '443'
    }
  }
], [
  {
    name: 'DenyInternetOutbound'
    properties: {
      priority: 4000
      direction: 'Outbound'
      access: 'Deny'
      protocol: '*'
      sourceAddressPrefix: '*'
      sourcePortRange: '*'
      destinationAddressPrefix: 'Internet'
      destinationPortRange: '*'
    }
  }
]) : []

var denyAllInbound = {
  name: 'DenyAllInbound'
  properties: {
    priority: 4096
    direction: 'Inbound'
    access: 'Deny'
    protocol: '*'
    sourceAddressPrefix: '*'
    sourcePortRange: '*'
    destinationAddressPrefix: '*'
    destinationPortRange: '*'
  }
}

// The integration subnet receives no inbound traffic (VNet integration is outbound only).
resource nsgApp 'Microsoft.Network/networkSecurityGroups@2025-05-01' = {
  name: 'nsg-app-${resourceToken}'
  location: location
  tags: tags
  properties: {
    securityRules: concat([
      denyAllInbound
    ], egressRules)
  }
}

// API Management's outbound-integration subnet: no inbound; outbound left to the platform's defaults (APIM needs
// Storage, Key Vault, Entra ID and Azure Monitor endpoints; see docs/infrastructure.md).
resource nsgApim 'Microsoft.Network/networkSecurityGroups@2025-05-01' = if (enableApim) {
  name: 'nsg-apim-${resourceToken}'
  location: location
  tags: tags
  properties: {
    securityRules: [
      denyAllInbound
    ]
  }
}

// Private endpoints: HTTPS and SMB (content share over the VNet) from the app subnet; HTTPS from the jumpbox and
// APIM subnets when they exist; everything else denied.
var peAppRule = {
  name: 'AllowAppSubnetHttpsSmb'
  properties: {
    priority: 100
    direction: 'Inbound'
    access: 'Allow'
    protocol: 'Tcp'
    sourceAddressPrefix: appSubnetPrefix
    sourcePortRange: '*'
    destinationAddressPrefix: privateEndpointSubnetPrefix
    destinationPortRanges: [
      '443'
      '445'
    ]
  }
}

var peOperatorRules = empty(extraHttpsSources) ? [] : [
  {
    name: 'AllowOperatorSubnetsHttps'
    properties: {
      priority: 110
      direction: 'Inbound'
      access: 'Allow'
      protocol: 'Tcp'
      sourceAddressPrefixes: extraHttpsSources
      sourcePortRange: '*'
      destinationAddressPrefix: privateEndpointSubnetPrefix
      destinationPortRange: '443'
    }
  }
]

// Peered VNets / VPN callers of the function app's private endpoint (enablePrivateInbound): 443 to the NIC that
// carries the sites application security group only.
var peCallerRules = empty(privateInboundAllowedSourcePrefixes) ? [] : [
  {
    name: 'AllowCallersToSitesEndpoint'
    properties: {
      priority: 120
      direction: 'Inbound'
      access: 'Allow'
      protocol: 'Tcp'
      sourceAddressPrefixes: privateInboundAllowedSourcePrefixes
      sourcePortRange: '*'
      destinationApplicationSecurityGroups: [
        {
          id: asgSites.id
        }
      ]
      destinationPortRange: '443'
    }
  }
]

var peDenyRule = {
  name: 'DenyAllOtherInbound'
  properties: {
    priority: 4096
    direction: 'Inbound'
    access: 'Deny'
    protocol: '*'
    sourceAddressPrefix: '*'
    sourcePortRange: '*'
    destinationAddressPrefix: '*'
    destinationPortRange: '*'
  }
}

resource nsgPrivateEndpoints 'Microsoft.Network/networkSecurityGroups@2025-05-01' = {
  name: 'nsg-pe-${resourceToken}'
  location: location
  tags: tags
  properties: {
    securityRules: concat([
      peAppRule
    ], peOperatorRules, peCallerRules, [
      peDenyRule
    ])
  }
}

// Jumpbox: SSH only from Azure Bastion.
resource nsgJumpbox 'Microsoft.Network/networkSecurityGroups@2025-05-01' = {
  name: 'nsg-jumpbox-${resourceToken}'
  location: location
  tags: tags
  properties: {
    securityRules: [
      {
        name: 'AllowSshFromBastion'
        properties: {
          priority: 100
          direction: 'Inbound'
          access: 'Allow'
          protocol: 'Tcp'
          sourceAddressPrefix: bastionSubnetPrefix
          sourcePortRange: '*'
          destinationAddressPrefix: jumpboxSubnetPrefix
          destinationPortRange: '22'
        }
      }
      {
        name: 'DenyAllOtherInbound'
        properties: {
          priority: 4096
          direction: 'Inbound'
          access: 'Deny'
          protocol: '*'
          sourceAddressPrefix: '*'
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRange: '*'
        }
      }
    ]
  }
}

var baseSubnets = [
  {
    name: appSubnetName
    properties: {
      addressPrefix: appSubnetPrefix
      defaultOutboundAccess: false
      networkSecurityGroup: {
        id: nsgApp.id
      }
      natGateway: {
        id: natGateway.id
      }
      delegations: [
        {
          name: 'webServerFarms'
          properties: {
            serviceName: 'Microsoft.Web/serverFarms'
          }
        }
      ]
    }
  }
  {
    name: privateEndpointSubnetName
    properties: {
      addressPrefix: privateEndpointSubnetPrefix
      defaultOutboundAccess: false
      privateEndpointNetworkPolicies: 'Enabled'
      networkSecurityGroup: {
        id: nsgPrivateEndpoints.id
      }
    }
  }
]

var jumpboxSubnets = [
  {
    name: jumpboxSubnetName
    properties: {
      addressPrefix: jumpboxSubnetPrefix
      defaultOutboundAccess: false
      networkSecurityGroup: {
        id: nsgJumpbox.id
      }
      natGateway: {
        id: natGateway.id
      }
    }
  }
  {
    name: bastionSubnetName
    properties: {
      addressPrefix: bastionSubnetPrefix
    }
  }
]

var apimSubnets = [
  {
    name: apimSubnetName
    properties: {
      addressPrefix: apimSubnetPrefix
      defaultOutboundAccess: false
      networkSecurityGroup: {
        // By resource ID: nsgApim exists only with enableApim, like this subnet (dependsOn on the VNet below).
        id: resourceId('Microsoft.Network/networkSecurityGroups', 'nsg-apim-${resourceToken}')
      }
      natGateway: {
        id: natGateway.id
      }
      // Lets the function app's access restrictions admit exactly this subnet (vnetSubnetResourceId rule).
      serviceEndpoints: [
        {
          service: 'Microsoft.Web'
        }
      ]
      delegations: [
        {
          name: 'webServerFarms'
          properties: {
            serviceName: 'Microsoft.Web/serverFarms'
          }
        }
      ]
    }
  }
]

resource vnet 'Microsoft.Network/virtualNetworks@2025-05-01' = {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        vnetAddressPrefix
      ]
    }
    // No custom DNS servers: Azure DNS (168.63.129.16) resolves the linked private DNS zones.
    subnets: concat(baseSubnets, enableJumpbox ? jumpboxSubnets : [], enableApim ? apimSubnets : [])
  }
  dependsOn: [
    nsgApim
  ]
}

output vnetId string = vnet.id
output vnetName string = vnet.name
output appSubnetId string = '${vnet.id}/subnets/${appSubnetName}'
output privateEndpointSubnetId string = '${vnet.id}/subnets/${privateEndpointSubnetName}'
output jumpboxSubnetId string = enableJumpbox ? '${vnet.id}/subnets/${jumpboxSubnetName}' : ''
output bastionSubnetId string = enableJumpbox ? '${vnet.id}/subnets/${bastionSubnetName}' : ''
output apimSubnetId string = enableApim ? '${vnet.id}/subnets/${apimSubnetName}' : ''
output natPublicIp string = natPublicIp.properties.ipAddress
output sitesApplicationSecurityGroupId string = asgSites.id
