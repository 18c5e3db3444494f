// AI gateway: private, VNet-integrated deployment (resource-group scope).
//   az deployment group create -g <rg> -f bicep/main.bicep -p bicep/main.bicepparam
//   azd up   (azure.yaml: infra.path = bicep, module = main; reads main.bicepparam)
// Order (enforced by references/dependsOn): network -> private DNS zones + VNet links -> identity ->
// storage (share, tables, endpoints, roles) / Key Vault / Azure OpenAI / monitoring (AMPLS) -> function app
// (+ Easy Auth) -> optional jumpbox/Bastion and API Management. Code deployment comes after (scripts/deploy.sh).
// Written for pycep-parser 0.5.1 (checkov's pin): no nullable params, typed arrays, imports, user functions or spread.
targetScope = 'resourceGroup'

@description('Environment name (azd AZURE_ENV_NAME); part of the resource names.')
@minLength(1)
@maxLength(24)
param environmentName string

@description('Azure region of every regional resource.')
param location string = resourceGroup().location

@description('Extra tags for every resource.')
param tags object = {}

@description('Entra tenant ID that issues the callers\' tokens.')
param tenantId string = subscription().tenantId

@description('Client ID of the gateway API app registration (app roles Gateway.Use, Usage.Read, Gateway.Admin). Easy Auth audience: api://<id> and <id>.')
@minLength(36)
@maxLength(36)
param gatewayClientId string

@description('Client IDs of the caller applications Easy Auth accepts. Empty: any application holding a token for the gateway audience (the gateway then enforces app roles).')
param allowedClientApplications array = []

@description('Accept gateway-issued API keys (tools that only send an api-key header). false: Easy Auth returns 401 to unauthenticated requests. true: Easy Auth allows anonymous requests through and the gateway itself rejects requests with neither a principal nor a valid key.')
param enableGatewayApiKeys bool = false

@description('Azure OpenAI model deployments: [{ name, model: { format, name, version }, sku: { name, capacity } }]. Their names become GATEWAY_ALLOWED_DEPLOYMENTS.')
param openAiDeployments array = [
  {
    name: 'gpt-4o-mini'
    model: {
      format: 'OpenAI'
      name: 'gpt-4o-mini'
      version: '2024-07-18'
    }
    sku: {
      name: 'GlobalStandard'
      capacity: 50
    }
  }
]

@description('Region of the Azure OpenAI account (model availability differs per region).')
param openAiLocation string = location

@description('Default dated api-version the gateway uses upstream.')
param openAiApiVersion string = '2024-10-21'

@description('GATEWAY_PRICES: JSON of USD per million tokens by deployment, e.g. {"gpt-4o-mini": {"input": 0.15, "output": 0.6}}. Empty: the usage ledger records no cost.')
param gatewayPrices string = ''

@description('Storage replication. A zone-redundant plan needs Standard_ZRS.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSkuName string = 'Standard_LRS'

@description('Maximum burst instances of the Elastic Premium plan.')
@minValue(1)
@maxValue(100)
param maximumElasticWorkerCount int = 20

@description('Zone-redundant Elastic Premium plan.')
param zoneRedundant bool = false

@description('Log Analytics retention in days.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('Virtual network address space and subnet prefixes.')
param vnetAddressPrefix string = '10.20.0.0/16'
param appSubnetPrefix string = '10.20.0.0/24'
param privateEndpointSubnetPrefix string = '10.20.1.0/24'
param jumpboxSubnetPrefix string = '10.20.2.0/27'
param bastionSubnetPrefix string = '10.20.3.0/26'
param apimSubnetPrefix string = '10.20.4.0/27'

@description('Inbound private endpoint for the function app and public network access disabled (private function URLs; deploy code from inside the VNet).')
param enablePrivateInbound bool = false

@description('Linux jumpbox (no public IP) with Azure Bastion, to test and deploy from inside the VNet.')
param enableJumpbox bool = false

@description('Jumpbox admin user name.')
param jumpboxAdminUsername string = 'azureuser'

@description('Jumpbox SSH public key (required when enableJumpbox).')
param jumpboxSshPublicKey string = ''

@description('API Management (Standard v2) in front of the gateway.')
param enableApim bool = false

@description('API Management publisher e-mail (required when enableApim).')
param apimPublisherEmail string = ''

@description('API Management publisher name.')
param apimPublisherName string = 'AI gateway'

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var allTags = union(tags, {
  'azd-env-name': environmentName
})
var storageSuffix = environment().suffixes.storage

// Tables the gateway uses (API keys, caller policies, usage records, quota counters).
var gatewayTables = [
  'gatewayApiKeys'
  'gatewayCallerPolicies'
  'gatewayUsage'
  'gatewayQuota'
]
var deploymentNames = [for deployment in openAiDeployments: deployment.name]

var storageAccountName = 'st${resourceToken}'
var functionAppName = 'func-${resourceToken}'
var contentShareName = toLower('func-${resourceToken}-content')

// Private DNS zones. One of each per VNet; the blob zone also serves the AMPLS endpoint.
var zoneBlob = 'privatelink.blob.${storageSuffix}'
var zoneQueue = 'privatelink.queue.${storageSuffix}'
var zoneTable = 'privatelink.table.${storageSuffix}'
var zoneFile = 'privatelink.file.${storageSuffix}'
var zoneVault = 'privatelink.vaultcore.azure.net'
var zoneOpenAi = 'privatelink.openai.azure.com'
var zoneCognitiveServices = 'privatelink.cognitiveservices.azure.com'
var zoneMonitor = 'privatelink.monitor.azure.com'
var zoneOms = 'privatelink.oms.opinsights.azure.com'
var zoneOds = 'privatelink.ods.opinsights.azure.com'
var zoneAgentSvc = 'privatelink.agentsvc.azure-automation.net'
var zoneSites = 'privatelink.azurewebsites.net'
var baseZones = [
  zoneBlob
  zoneQueue
  zoneTable
  zoneFile
  zoneVault
  zoneOpenAi
  zoneCognitiveServices
  zoneMonitor
  zoneOms
  zoneOds
  zoneAgentSvc
]
var zoneNames = concat(baseZones, enablePrivateInbound ? [
  zoneSites
] : [])

module network 'modules/network.bicep' = {
  name: 'network'
  params: {
    location: location
    tags: allTags
    resourceToken: resourceToken
    vnetAddressPrefix: vnetAddressPrefix
    appSubnetPrefix: appSubnetPrefix
    privateEndpointSubnetPrefix: privateEndpointSubnetPrefix
    jumpboxSubnetPrefix: jumpboxSubnetPrefix
    bastionSubnetPrefix: bastionSubnetPrefix
    apimSubnetPrefix: apimSubnetPrefix
    enableJumpbox: enableJumpbox
    enableApim: enableApim
  }
}

module dns 'modules/private-dns-zones.bicep' = {
  name: 'private-dns-zones'
  params: {
    zoneNames: zoneNames
    vnetId: network.outputs.vnetId
    vnetName: network.outputs.vnetName
    tags: allTags
  }
}

// Created (and granted its roles) before the function app exists: no first-start race on role propagation.
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: 'id-func-${resourceToken}'
  location: location
  tags: allTags
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: storageAccountName
    location: location
    tags: allTags
    skuName: storageSkuName
    contentShareName: contentShareName
    tableNames: gatewayTables
    principalId: identity.properties.principalId
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneIds: {
      blob: resourceId('Microsoft.Network/privateDnsZones', zoneBlob)
      queue: resourceId('Microsoft.Network/privateDnsZones', zoneQueue)
      table: resourceId('Microsoft.Network/privateDnsZones', zoneTable)
      file: resourceId('Microsoft.Network/privateDnsZones', zoneFile)
    }
  }
  dependsOn: [
    dns
  ]
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'key-vault'
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: allTags
    storageAccountName: storage.outputs.name
    principalId: identity.properties.principalId
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneId: resourceId('Microsoft.Network/privateDnsZones', zoneVault)
  }
  dependsOn: [
    dns
  ]
}

module openAi 'modules/openai.bicep' = {
  name: 'openai'
  params: {
    name: 'oai-${resourceToken}'
    location: openAiLocation
    tags: allTags
    deployments: openAiDeployments
    principalId: identity.properties.principalId
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneIds: [
      resourceId('Microsoft.Network/privateDnsZones', zoneOpenAi)
      resourceId('Microsoft.Network/privateDnsZones', zoneCognitiveServices)
    ]
  }
  dependsOn: [
    dns
  ]
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: allTags
    resourceToken: resourceToken
    retentionInDays: logRetentionInDays
    principalId: identity.properties.principalId
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneIds: [
      resourceId('Microsoft.Network/privateDnsZones', zoneMonitor)
      resourceId('Microsoft.Network/privateDnsZones', zoneOms)
      resourceId('Microsoft.Network/privateDnsZones', zoneOds)
      resourceId('Microsoft.Network/privateDnsZones', zoneAgentSvc)
      resourceId('Microsoft.Network/privateDnsZones', zoneBlob)
    ]
  }
  dependsOn: [
    dns
  ]
}

// The site is created only after the share, the storage endpoints with their zone groups, the zone links,
// Key Vault (content-share secret + endpoint), monitoring and every role assignment exist.
module functionApp 'modules/functionapp.bicep' = {
  name: 'function-app'
  params: {
    location: location
    tags: allTags
    resourceToken: resourceToken
    name: functionAppName
    identityId: identity.id
    identityClientId: identity.properties.clientId
    appSubnetId: network.outputs.appSubnetId
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    sitesPrivateDnsZoneId: enablePrivateInbound ? resourceId('Microsoft.Network/privateDnsZones', zoneSites) : ''
    storageAccountName: storage.outputs.name
    contentShareName: storage.outputs.contentShareName
    contentShareSecretUri: keyVault.outputs.contentSecretUri
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
    openAiEndpoint: openAi.outputs.endpoint
    openAiApiVersion: openAiApiVersion
    allowedDeployments: join(deploymentNames, ',')
    authTenantId: tenantId
    authClientId: gatewayClientId
    allowedClientApplications: allowedClientApplications
    enableGatewayApiKeys: enableGatewayApiKeys
    gatewayPrices: gatewayPrices
    enablePrivateInbound: enablePrivateInbound
    maximumElasticWorkerCount: maximumElasticWorkerCount
    zoneRedundant: zoneRedundant
  }
  dependsOn: [
    dns
    storage
    keyVault
    openAi
    monitoring
  ]
}

module jumpbox 'modules/jumpbox.bicep' = if (enableJumpbox) {
  name: 'jumpbox'
  params: {
    location: location
    tags: allTags
    resourceToken: resourceToken
    jumpboxSubnetId: network.outputs.jumpboxSubnetId
    bastionSubnetId: network.outputs.bastionSubnetId
    adminUsername: jumpboxAdminUsername
    sshPublicKey: jumpboxSshPublicKey
  }
}

module apim 'modules/apim.bicep' = if (enableApim) {
  name: 'apim'
  params: {
    location: location
    tags: allTags
    resourceToken: resourceToken
    publisherEmail: apimPublisherEmail
    publisherName: apimPublisherName
    subnetId: network.outputs.apimSubnetId
    functionAppHostName: functionApp.outputs.defaultHostName
    tenantId: tenantId
    authClientId: gatewayClientId
    enableGatewayApiKeys: enableGatewayApiKeys
  }
}

// azd stores outputs in the environment (.azure/<env>/.env); scripts/deploy.sh and smoke_test.py read them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenantId
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output GATEWAY_URL string = 'https://${functionApp.outputs.defaultHostName}/api'
output GATEWAY_AUTH_CLIENT_ID string = gatewayClientId
output GATEWAY_ALLOWED_DEPLOYMENTS string = join(deploymentNames, ',')
output AZURE_OPENAI_ENDPOINT string = openAi.outputs.endpoint
output AZURE_OPENAI_API_VERSION string = openAiApiVersion
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.properties.clientId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.appInsightsName
output NAT_EGRESS_IP string = network.outputs.natPublicIp
output JUMPBOX_VM_NAME string = enableJumpbox ? jumpbox.outputs.vmName : ''
output BASTION_NAME string = enableJumpbox ? jumpbox.outputs.bastionName : ''
output APIM_GATEWAY_URL string = enableApim ? apim.outputs.gatewayUrl : ''
