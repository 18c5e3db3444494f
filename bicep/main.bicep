// AI gateway: private, VNet-integrated deployment (resource-group scope).
//   az deployment group create -g <rg> -f bicep/main.bicep -p bicep/main.bicepparam
//   azd up   (azure.yaml: infra.path = bicep, module = main; reads main.bicepparam)
// Order (enforced by references/dependsOn): network -> private DNS zones + VNet links -> identity -> monitoring
// (AMPLS) -> keyless storage (tables, endpoints, roles) / content-share storage (share, endpoint) / Key Vault /
// Azure OpenAI -> function app (+ app settings, Easy Auth) -> optional jumpbox/Bastion and API Management.
// Code deployment comes after (azd deploy / scripts/deploy.sh). Preflight first: scripts/preflight.sh.
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

@description('''Azure OpenAI model deployments: [{ name, model: { format, name, version }, sku: { name, capacity } }].
Their names become GATEWAY_ALLOWED_DEPLOYMENTS. main.bicepparam builds this list from azd/shell environment variables
(AZURE_OPENAI_CHAT_* and AZURE_OPENAI_EMBEDDING_*); scripts/preflight.sh checks each model, version and SKU against
`az cognitiveservices model list` in openAiLocation before anything is deployed. Defaults: models open to new
customers on 2026-12-01 per Microsoft's model retirement schedule (docs/infrastructure.md).''')
param openAiDeployments array = [
  {
    name: 'gpt-5.4-mini'
    model: {
      format: 'OpenAI'
      name: 'gpt-5.4-mini'
      version: '2026-03-17'
    }
    sku: {
      name: 'GlobalStandard'
      capacity: 50
    }
  }
  {
    name: 'text-embedding-3-small'
    model: {
      format: 'OpenAI'
      name: 'text-embedding-3-small'
      version: '1'
    }
    sku: {
      name: 'GlobalStandard'
      capacity: 50
    }
  }
]

@description('Region of the Azure OpenAI account (model availability differs per region). Empty: location. Its private endpoint is always in location, the VNet\'s region.')
param openAiLocation string = ''

@description('''Several Azure OpenAI accounts behind the gateway (a backend pool, docs/backend-pools.md). Empty (default):
the single account above, exactly as before. Otherwise one account per entry instead of it:
[{ label, location?, priority?, weight?, deployments? }]. label: 1-32 letters, digits, '.', '_', '-' (starting with
a letter or digit), unique; it names the backend in x-gateway-backend, the ledger and /api/ready, and seeds the
account's name. location: the account's region (default: openAiLocation, else location); its private endpoint is
always in location, the VNet's region. priority (1-100, default 1) and weight (1-1000, default 1): as in
GATEWAY_BACKENDS. deployments: this account's model deployments, same shape as openAiDeployments (default:
openAiDeployments); every account must carry every name of openAiDeployments, since GATEWAY_BACKENDS is one
"*" pool of all the accounts.''')
@maxLength(16)
param openAiAccounts array = []

@description('Default dated api-version the gateway uses upstream. 2025-04-01-preview accepts max_completion_tokens and the GPT-5 family (reasoning models); the v1 routes need none.')
param openAiApiVersion string = '2025-04-01-preview'

@description('Salt for every resource name. Change it (azd env set RESOURCE_NAME_SALT ...) to redeploy next to soft-deleted resources instead of recovering them.')
@maxLength(16)
param resourceNameSalt string = ''

@description('GATEWAY_PRICES: JSON of USD per million tokens by deployment, e.g. {"gpt-4o-mini": {"input": 0.15, "output": 0.6}}. Empty: the usage ledger records no cost.')
param gatewayPrices string = ''

@description('Storage replication of both accounts. With zoneRedundant, LRS/GRS become ZRS/GZRS.')
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

@description('Always-ready instances of the function app (at least 3 with zoneRedundant).')
@minValue(1)
@maxValue(20)
param minimumElasticInstanceCount int = 1

@description('Zone-redundant Elastic Premium plan: at least 3 instances and zone-redundant storage (ZRS/GZRS) follow from it.')
param zoneRedundant bool = false

@description('Elastic Premium instance size: EP1 (1 vCPU, 3.5 GB), EP2 (2 vCPU, 7 GB), EP3 (4 vCPU, 14 GB). The Python worker process count follows from it (docs/tuning.md).')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param planSku string = 'EP1'

@description('Python worker processes per instance (FUNCTIONS_WORKER_PROCESS_COUNT). 0 (default): one per vCPU of planSku.')
@minValue(0)
@maxValue(10)
param workerProcessCount int = 0

@description('Prewarmed instances of the Elastic Premium app (the buffer warmed ahead of HTTP scale-out; billed while allocated). Platform default and advice: 1.')
@minValue(1)
@maxValue(10)
param preWarmedInstanceCount int = 1

@description('''Elastic Premium content share: keyVaultReferenceAfterCreation (default; settings applied after the site
exists) or connectionStringAtCreation (the public private-storage quickstarts' pattern). See docs/infrastructure.md.''')
@allowed([
  'keyVaultReferenceAfterCreation'
  'connectionStringAtCreation'
])
param contentShareMode string = 'keyVaultReferenceAfterCreation'

@description('Log Analytics retention in days.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('E-mail address the gateway alerts notify (5xx rate, quota refusals, ledger write failures); empty: portal only.')
param alertEmail string = ''

@description('Alert when more than this percentage of model calls in 5 minutes answer 5xx.')
@minValue(1)
@maxValue(100)
param alertServerErrorPercent int = 5

@description('Alert when more than this many calls are refused by a quota in 5 minutes.')
@minValue(1)
param alertQuotaRefusals int = 100

@description('Virtual network address space and subnet prefixes.')
param vnetAddressPrefix string = '10.20.0.0/16'
param appSubnetPrefix string = '10.20.0.0/24'
param privateEndpointSubnetPrefix string = '10.20.1.0/24'
param jumpboxSubnetPrefix string = '10.20.2.0/27'
param bastionSubnetPrefix string = '10.20.3.0/26'
param apimSubnetPrefix string = '10.20.4.0/27'

@description('Inbound private endpoint for the function app and public network access disabled (private function URLs; deploy code from inside the VNet).')
param enablePrivateInbound bool = false

@description('Address prefixes of peered VNets / VPN clients allowed to call the function app\'s private endpoint (443). The private-endpoint subnet\'s NSG denies every other source outside the VNet\'s own subnets.')
param privateInboundAllowedSourcePrefixes array = []

@description('IPv4 CIDR ranges allowed to reach the SCM (deployment) site. Empty: deploy through the private endpoint (enablePrivateInbound + jumpbox).')
param scmAllowedIpRanges array = []

@description('Limit the app subnet\'s outbound traffic to the VNet, Entra ID and Azure Monitor (NSG service tags); the rest of the Internet is denied.')
param restrictEgress bool = true

@description('Extra destination prefixes (443) for the app subnet when restrictEgress is on, e.g. a package mirror.')
param egressAllowedAddressPrefixes array = []

@description('Linux jumpbox (no public IP) with Azure Bastion, to test and deploy from inside the VNet.')
param enableJumpbox bool = false

@description('Jumpbox admin user name.')
param jumpboxAdminUsername string = 'azureuser'

@description('Jumpbox SSH public key (required when enableJumpbox; the jumpbox module rejects an empty key).')
param jumpboxSshPublicKey string = ''

@description('Encryption at host on the jumpbox VM (needs the subscription feature Microsoft.Compute/EncryptionAtHost).')
param jumpboxEncryptionAtHost bool = false

@description('API Management (Standard v2) in front of the gateway.')
param enableApim bool = false

@description('API Management publisher e-mail (required when enableApim; the APIM module rejects an empty value).')
param apimPublisherEmail string = ''

@description('API Management publisher name.')
param apimPublisherName string = 'AI gateway'

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, resourceNameSalt))
var allTags = union(tags, {
  'azd-env-name': environmentName
})
var storageSuffix = environment().suffixes.storage
var openAiRegion = empty(openAiLocation) ? location : openAiLocation

// Tables the gateway uses (API keys, caller policies, usage records, quota counters, price versions, the finance
// daily usage table, the hourly partial sums of its rollup, and the owners of stored objects); shared/storage/tables.py
// names the same ones.
var gatewayTables = [
  'gatewayApiKeys'
  'gatewayCallerPolicies'
  'gatewayUsage'
  'gatewayQuota'
  'gatewayPrices'
  'gatewayUsageDaily'
  'gatewayUsageHourly'
  'gatewayObjects'
]
var deploymentNames = [for deployment in openAiDeployments: deployment.name]

// Every resource name is computed here from deployment-time values (never from module outputs), so what-if can
// resolve every resource ID instead of short-circuiting.
var vnetName = 'vnet-${resourceToken}'
var storageAccountName = 'st${resourceToken}'
var contentStorageAccountName = 'stc${resourceToken}'
var keyVaultName = 'kv-${resourceToken}'
var openAiName = 'oai-${resourceToken}'
// Pool accounts: named from the label (not the position), so reordering or appending entries renames nothing.
// Each entry over its defaults (union: the entry's own fields win). deployments defaults to [] here and to
// openAiDeployments at the module: [] merged with the entry's list is that list whether union replaces or merges
// nested arrays.
var poolAccountDefaults = {
  location: openAiRegion
  priority: 1
  weight: 1
  deployments: []
}
var poolAccounts = [for account in openAiAccounts: union(poolAccountDefaults, account)]
var poolAccountNames = [for account in openAiAccounts: 'oai-${resourceToken}-${uniqueString(resourceToken, account.label)}']
var appInsightsName = 'appi-${resourceToken}'
var functionAppName = 'func-${resourceToken}'
var contentShareName = toLower('func-${resourceToken}-content')

// Zone redundancy needs zone-redundant storage.
var geoStorageSkus = [
  'Standard_GRS'
  'Standard_GZRS'
]
var effectiveStorageSku = zoneRedundant ? (contains(geoStorageSkus, storageSkuName) ? 'Standard_GZRS' : 'Standard_ZRS') : storageSkuName

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
    vnetName: vnetName
    vnetAddressPrefix: vnetAddressPrefix
    appSubnetPrefix: appSubnetPrefix
    privateEndpointSubnetPrefix: privateEndpointSubnetPrefix
    jumpboxSubnetPrefix: jumpboxSubnetPrefix
    bastionSubnetPrefix: bastionSubnetPrefix
    apimSubnetPrefix: apimSubnetPrefix
    enableJumpbox: enableJumpbox
    enableApim: enableApim
    privateInboundAllowedSourcePrefixes: privateInboundAllowedSourcePrefixes
    restrictEgress: restrictEgress
    egressAllowedAddressPrefixes: egressAllowedAddressPrefixes
  }
}

module dns 'modules/private-dns-zones.bicep' = {
  name: 'private-dns-zones'
  params: {
    zoneNames: zoneNames
    vnetId: network.outputs.vnetId
    vnetName: vnetName
    tags: allTags
  }
}

// Created (and granted its roles) before the function app exists: no first-start race on role propagation.
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: 'id-func-${resourceToken}'
  location: location
  tags: allTags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: allTags
    resourceToken: resourceToken
    appInsightsName: appInsightsName
    retentionInDays: logRetentionInDays
    principalId: identity.properties.principalId
    principalResourceId: identity.id
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

// The operators' workbook and alert rules over Application Insights (docs/observability.md).
module observability 'modules/observability.bicep' = {
  name: 'observability'
  params: {
    location: location
    tags: allTags
    resourceToken: resourceToken
    appInsightsId: resourceId('Microsoft.Insights/components', appInsightsName)
    alertEmail: alertEmail
    serverErrorPercentThreshold: alertServerErrorPercent
    quotaRefusalThreshold: alertQuotaRefusals
  }
  dependsOn: [
    monitoring
  ]
}

// Host storage and the gateway's tables: keyless (identity only).
module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: storageAccountName
    location: location
    tags: allTags
    skuName: effectiveStorageSku
    tableNames: gatewayTables
    principalId: identity.properties.principalId
    principalResourceId: identity.id
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneIds: {
      blob: resourceId('Microsoft.Network/privateDnsZones', zoneBlob)
      queue: resourceId('Microsoft.Network/privateDnsZones', zoneQueue)
      table: resourceId('Microsoft.Network/privateDnsZones', zoneTable)
    }
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
  dependsOn: [
    dns
  ]
}

// The Elastic Premium content share: its own key-enabled, file-only account.
module contentStorage 'modules/content-storage.bicep' = {
  name: 'content-storage'
  params: {
    name: contentStorageAccountName
    location: location
    tags: allTags
    skuName: effectiveStorageSku
    contentShareName: contentShareName
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    fileDnsZoneId: resourceId('Microsoft.Network/privateDnsZones', zoneFile)
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
  dependsOn: [
    dns
  ]
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'key-vault'
  params: {
    name: keyVaultName
    location: location
    tags: allTags
    storageAccountName: contentStorageAccountName
    principalId: identity.properties.principalId
    principalResourceId: identity.id
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneId: resourceId('Microsoft.Network/privateDnsZones', zoneVault)
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
  dependsOn: [
    dns
    contentStorage
  ]
}

// The account may live in another region (model availability); its private endpoint stays in the VNet's region.
// Only without openAiAccounts: the default deploys exactly the single account it always did.
module openAi 'modules/openai.bicep' = if (empty(openAiAccounts)) {
  name: 'openai'
  params: {
    name: openAiName
    location: openAiRegion
    privateEndpointLocation: location
    tags: allTags
    deployments: openAiDeployments
    principalId: identity.properties.principalId
    principalResourceId: identity.id
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneIds: [
      resourceId('Microsoft.Network/privateDnsZones', zoneOpenAi)
      resourceId('Microsoft.Network/privateDnsZones', zoneCognitiveServices)
    ]
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
  dependsOn: [
    dns
  ]
}

// Backend pool: one account per openAiAccounts entry, each like the single account (private endpoint in the
// VNet's region and subnet, registered in the OpenAI zones; Cognitive Services OpenAI User for the identity).
// The nested deployment's name carries the label: ARM rejects a template that defines one deployment name twice,
// so a duplicated label (or one with characters a deployment name refuses) fails before anything is deployed.
module openAiPool 'modules/openai.bicep' = [for (account, i) in poolAccounts: {
  name: 'openai-${account.label}'
  params: {
    name: poolAccountNames[i]
    location: account.location
    privateEndpointLocation: location
    tags: allTags
    deployments: empty(account.deployments) ? openAiDeployments : account.deployments
    principalId: identity.properties.principalId
    principalResourceId: identity.id
    privateEndpointSubnetId: network.outputs.privateEndpointSubnetId
    privateDnsZoneIds: [
      resourceId('Microsoft.Network/privateDnsZones', zoneOpenAi)
      resourceId('Microsoft.Network/privateDnsZones', zoneCognitiveServices)
    ]
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
  dependsOn: [
    dns
  ]
}]

// Endpoints are computed from the names (as the module's endpoint output is), never read from outputs.
var poolBackends = [for (account, i) in poolAccounts: {
  label: account.label
  endpoint: 'https://${poolAccountNames[i]}.openai.azure.com'
  priority: account.priority
  weight: account.weight
}]
// One "*" pool of every account: each serves every name of openAiDeployments (GATEWAY_ALLOWED_DEPLOYMENTS).
var gatewayBackends = empty(openAiAccounts) ? '' : string({
  '*': poolBackends
})
var openAiEndpoint = empty(openAiAccounts) ? 'https://${openAiName}.openai.azure.com' : poolBackends[0].endpoint
var openAiAccountName = empty(openAiAccounts) ? openAiName : poolAccountNames[0]

// The site is created only after the share, the storage endpoints with their zone groups, the zone links,
// Key Vault (content-share secret + endpoint), monitoring and every role assignment exist.
var apimSubnetId = resourceId('Microsoft.Network/virtualNetworks/subnets', vnetName, 'snet-apim')
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
    sitesApplicationSecurityGroupId: network.outputs.sitesApplicationSecurityGroupId
    storageAccountName: storageAccountName
    contentStorageAccountName: contentStorageAccountName
    contentShareName: contentShareName
    contentShareSecretUri: keyVault.outputs.contentSecretUri
    contentShareMode: contentShareMode
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
    openAiEndpoint: openAiEndpoint
    gatewayBackends: gatewayBackends
    openAiApiVersion: openAiApiVersion
    allowedDeployments: join(deploymentNames, ',')
    authTenantId: tenantId
    authClientId: gatewayClientId
    allowedClientApplications: allowedClientApplications
    enableGatewayApiKeys: enableGatewayApiKeys
    gatewayPrices: gatewayPrices
    enablePrivateInbound: enablePrivateInbound
    // With a private endpoint APIM comes in through it (public access off); service-endpoint rules aren't
    // supported on apps that have a private endpoint, so the APIM subnet rule is only for public inbound.
    restrictToApim: enableApim && !enablePrivateInbound
    apimSubnetId: enableApim ? apimSubnetId : ''
    scmAllowedIpRanges: scmAllowedIpRanges
    maximumElasticWorkerCount: maximumElasticWorkerCount
    minimumElasticInstanceCount: minimumElasticInstanceCount
    zoneRedundant: zoneRedundant
    planSku: planSku
    workerProcessCount: workerProcessCount
    preWarmedInstanceCount: preWarmedInstanceCount
  }
  // storage, contentStorage and the Azure OpenAI accounts are only referenced by name here, so the order is
  // explicit (their role assignments exist before the site starts); the other modules (network, Key Vault,
  // monitoring) are referenced through their outputs.
  dependsOn: [
    dns
    storage
    contentStorage
    openAi
    openAiPool
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
    // The module rejects a short/empty key (@minLength). The placeholder only stands in while the module is
    // switched off, because ARM may validate a condition-false module's parameters too (Azure/bicep#2371).
    sshPublicKey: enableJumpbox ? jumpboxSshPublicKey : 'unused: enableJumpbox is false'
    encryptionAtHost: jumpboxEncryptionAtHost
  }
}

module apim 'modules/apim.bicep' = if (enableApim) {
  name: 'apim'
  params: {
    location: location
    tags: allTags
    resourceToken: resourceToken
    // Same pattern: the module rejects an empty e-mail; the placeholder only stands in while APIM is off.
    publisherEmail: enableApim ? apimPublisherEmail : 'unused@example.invalid'
    publisherName: apimPublisherName
    subnetId: network.outputs.apimSubnetId
    functionAppHostName: functionApp.outputs.defaultHostName
    tenantId: tenantId
    authClientId: gatewayClientId
    enableGatewayApiKeys: enableGatewayApiKeys
    appInsightsName: appInsightsName
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
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
output AZURE_OPENAI_ENDPOINT string = openAiEndpoint
output GATEWAY_BACKENDS string = gatewayBackends
output AZURE_OPENAI_LOCATION string = openAiRegion
output AZURE_OPENAI_API_VERSION string = openAiApiVersion
output AZURE_STORAGE_ACCOUNT_NAME string = storageAccountName
output AZURE_CONTENT_STORAGE_ACCOUNT_NAME string = contentStorageAccountName
output AZURE_OPENAI_NAME string = openAiAccountName
output AZURE_KEY_VAULT_NAME string = keyVaultName
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.properties.clientId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.appInsightsName
output NAT_EGRESS_IP string = network.outputs.natPublicIp
output JUMPBOX_VM_NAME string = enableJumpbox ? jumpbox!.outputs.vmName : ''
output BASTION_NAME string = enableJumpbox ? jumpbox!.outputs.bastionName : ''
output APIM_GATEWAY_URL string = enableApim ? apim!.outputs.gatewayUrl : ''
