// Linux Elastic Premium plan (EP1 by default; planSku) and the Python function app: user-assigned identity, regional VNet
// integration with all outbound traffic (and the content share) routed through the VNet, HTTPS only, TLS 1.2,
// FTPS and basic publishing credentials off, identity-based host storage, Easy Auth (Entra ID, v2 issuer),
// access restrictions (only API Management when it fronts the app; the SCM site closed unless allowed).

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Name suffix shared by the resources of this deployment.')
param resourceToken string

@description('Function app name (also its default host name).')
param name string

@description('Resource ID of the user-assigned identity.')
param identityId string

@description('Client ID of the user-assigned identity.')
param identityClientId string

@description('App-integration subnet (delegated to Microsoft.Web/serverFarms).')
param appSubnetId string

@description('Private-endpoint subnet (inbound endpoint, when enablePrivateInbound).')
param privateEndpointSubnetId string

@description('Resource ID of privatelink.azurewebsites.net (when enablePrivateInbound).')
param sitesPrivateDnsZoneId string = ''

@description('Application security group of the inbound private endpoint (NSG rules for peered/VPN callers).')
param sitesApplicationSecurityGroupId string = ''

@description('Host and gateway storage account name (keyless; blobs, queues, tables).')
param storageAccountName string

@description('Content-share storage account name (key-enabled, file-only).')
param contentStorageAccountName string

@description('Content share name (pre-created in the content-share account).')
param contentShareName string

@description('Key Vault secret URI of the content-share connection string.')
param contentShareSecretUri string

@description('''How the Elastic Premium content share is configured:
keyVaultReferenceAfterCreation (default): the site is created without app settings; a separate appsettings resource
then sets them all, the content share as a Key Vault reference (validation skipped, share pre-created). A Key Vault
reference to a private vault in the site's creation request is known to fail.
connectionStringAtCreation: the pattern of the public Elastic Premium private-storage quickstarts; the content-share
connection string (with the key of the file-only account) is a plain app setting set at creation.''')
@allowed([
  'keyVaultReferenceAfterCreation'
  'connectionStringAtCreation'
])
param contentShareMode string = 'keyVaultReferenceAfterCreation'

@description('Application Insights connection string.')
param appInsightsConnectionString string

@description('Log Analytics workspace for the app diagnostic logs.')
param logAnalyticsWorkspaceId string

@description('Azure OpenAI endpoint (https://<custom-subdomain>.openai.azure.com).')
param openAiEndpoint string

@description('Default dated api-version the gateway uses upstream.')
param openAiApiVersion string

@description('Comma-separated deployment names callers may use.')
param allowedDeployments string

@description('Entra tenant ID that issues caller tokens.')
param authTenantId string

@description('Client ID of the gateway API app registration (Easy Auth audience).')
param authClientId string

@description('Client IDs of caller applications allowed by Easy Auth (empty: any application whose token has the audience; app roles are then enforced by the gateway).')
param allowedClientApplications array = []

@description('Accept gateway-issued API keys. true: Easy Auth lets unauthenticated requests through (AllowAnonymous) and the gateway rejects requests with neither a principal nor a valid key.')
param enableGatewayApiKeys bool = false

@description('GATEWAY_PRICES for the usage ledger (JSON; empty: no cost recorded).')
param gatewayPrices string = ''

@description('GATEWAY_BACKENDS: JSON of backend pools by deployment (docs/backend-pools.md). Empty: the setting is not set and AZURE_OPENAI_ENDPOINT is a pool of one.')
param gatewayBackends string = ''

@description('Disable public inbound access and add a private endpoint for the app (private function URLs).')
param enablePrivateInbound bool = false

@description('API Management fronts the app: the main site then admits only APIM\'s subnet (default action Deny).')
param restrictToApim bool = false

@description('APIM outbound-integration subnet (service endpoint Microsoft.Web), when restrictToApim.')
param apimSubnetId string = ''

@description('IPv4 CIDR ranges allowed to reach the SCM (deployment) site. Empty: SCM only through the private endpoint (enablePrivateInbound) - deploy from inside the VNet.')
param scmAllowedIpRanges array = []

@description('Maximum burst instances of the Elastic Premium plan.')
@minValue(1)
@maxValue(100)
param maximumElasticWorkerCount int = 20

@description('Always-ready (pre-warmed minimum) instances. Raised to 3 when zoneRedundant.')
@minValue(1)
@maxValue(20)
param minimumElasticInstanceCount int = 1

@description('Zone-redundant plan (at least 3 instances; main.bicep makes both storage accounts ZRS).')
param zoneRedundant bool = false

@description('Elastic Premium instance size: EP1 (1 vCPU, 3.5 GB), EP2 (2 vCPU, 7 GB), EP3 (4 vCPU, 14 GB). docs/tuning.md.')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param planSku string = 'EP1'

@description('Python worker processes per instance (FUNCTIONS_WORKER_PROCESS_COUNT). 0: one per vCPU of planSku. docs/tuning.md.')
@minValue(0)
@maxValue(10)
param workerProcessCount int = 0

@description('Prewarmed instances: the warm buffer the platform adds ahead of HTTP scale-out once the app is active (billed while allocated). The platform default and advice is 1. docs/tuning.md.')
@minValue(1)
@maxValue(10)
param preWarmedInstanceCount int = 1

var storageSuffix = environment().suffixes.storage
var unauthenticatedClientAction = enableGatewayApiKeys ? 'AllowAnonymous' : 'Return401'
var openIdIssuer = '${environment().authentication.loginEndpoint}${authTenantId}/v2.0'
var allowedAudiences = [
  'api://${authClientId}'
  authClientId
]
var aadValidation = union({
  allowedAudiences: allowedAudiences
}, empty(allowedClientApplications) ? {} : {
  defaultAuthorizationPolicy: {
    allowedApplications: allowedClientApplications
  }
})

// Zone redundancy: the platform spreads instances over three zones and needs at least three of them.
var minimumInstances = zoneRedundant ? max(3, minimumElasticInstanceCount) : minimumElasticInstanceCount
var maximumInstances = max(maximumElasticWorkerCount, minimumInstances)

// Python runs one event loop per process (the gateway's handlers are all async, so one process serves any number
// of concurrent calls) and one process uses at most one core: one worker process per vCPU (docs/tuning.md, D62).
var vcpusBySku = {
  EP1: 1
  EP2: 2
  EP3: 4
}
var workerProcesses = (workerProcessCount == 0) ? vcpusBySku[planSku] : workerProcessCount

resource plan 'Microsoft.Web/serverfarms@2025-03-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy is the zoneRedundant parameter (3+ instances, ZRS storage - enforced below and in main.bicep); off by default for cost
  name: 'plan-${resourceToken}'
  location: location
  tags: tags
  kind: 'elastic'
  sku: {
    name: planSku
    tier: 'ElasticPremium'
    family: 'EP'
    capacity: minimumInstances
  }
  properties: {
    reserved: true
    maximumElasticWorkerCount: maximumInstances
    zoneRedundant: zoneRedundant
  }
}

// Every app setting except the content share. Host storage goes through the user-assigned identity (no
// AzureWebJobsStorage connection string; the account allows no shared keys).
var fixedSettings = {
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'python'
  // Worker processes per instance, derived from the plan size (docs/tuning.md). Set explicitly, it also keeps the
  // host's dynamic worker concurrency (which would add processes by itself) off.
  FUNCTIONS_WORKER_PROCESS_COUNT: string(workerProcesses)
  // HTTP streaming (azurefunctions-extensions-http-fastapi) needs init indexing on Python <= 3.12.
  PYTHON_ENABLE_INIT_INDEXING: '1'
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: 'https://${storageAccountName}.blob.${storageSuffix}'
  AzureWebJobsStorage__queueServiceUri: 'https://${storageAccountName}.queue.${storageSuffix}'
  AzureWebJobsStorage__tableServiceUri: 'https://${storageAccountName}.table.${storageSuffix}'
  // No build in Azure: the package carries its requirements in .python_packages (scripts/build_package.py; the app
  // subnet has no route to a package index). azure.yaml (remoteBuild: false) and scripts/deploy.sh agree (D72,
  // tests/infra/test_deploy_path.py).
  SCM_DO_BUILD_DURING_DEPLOYMENT: 'false'
  ENABLE_ORYX_BUILD: 'false'
  // Telemetry: the Python worker configures Azure Monitor; Entra ID-authenticated ingestion (local auth is off).
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'
  // Traces: one call in ten, read by the worker's Azure Monitor distro (metrics and errors are never sampled;
  // docs/observability.md).
  OTEL_TRACES_SAMPLER: 'microsoft.fixed_percentage'
  OTEL_TRACES_SAMPLER_ARG: '0.1'
  // The gateway's own settings.
  AZURE_CLIENT_ID: identityClientId
  AZURE_OPENAI_ENDPOINT: openAiEndpoint
  AZURE_OPENAI_API_VERSION: openAiApiVersion
  GATEWAY_ALLOWED_DEPLOYMENTS: allowedDeployments
  GATEWAY_STORAGE_TABLE_ENDPOINT: 'https://${storageAccountName}.table.${storageSuffix}'
  GATEWAY_AUTH_TENANT_IDS: authTenantId
  GATEWAY_AUTH_CLIENT_ID: authClientId
  GATEWAY_API_KEYS_ENABLED: enableGatewayApiKeys ? 'true' : 'false'
  GATEWAY_PRICES: gatewayPrices
}

// GATEWAY_BACKENDS only when main.bicep deploys several accounts: a single-account deployment keeps exactly
// the settings it had before backend pools existed.
var poolSettings = empty(gatewayBackends) ? {} : {
  GATEWAY_BACKENDS: gatewayBackends
}
var baseSettings = union(fixedSettings, poolSettings)

var deferContentShare = contentShareMode == 'keyVaultReferenceAfterCreation'

// Elastic Premium content share on the file-only account (Azure Files has no managed-identity mount).
// Key Vault mode: the reference is resolved with the user-assigned identity over the vault's private endpoint;
// the share is pre-created, so the creation-time validation (which can't resolve a reference) is skipped.
var contentSettingsKeyVault = {
  WEBSITE_CONTENTAZUREFILECONNECTIONSTRING: '@Microsoft.KeyVault(SecretUri=${contentShareSecretUri})'
  WEBSITE_CONTENTSHARE: contentShareName
  WEBSITE_SKIP_CONTENTSHARE_VALIDATION: '1'
  // Legacy spelling of outboundVnetRouting.contentShareTraffic, kept for hosts that only honour the setting.
  WEBSITE_CONTENTOVERVNET: '1'
  // The appsettings update completes before the deployment continues.
  WEBSITE_ENABLE_SYNC_UPDATE_SITE: 'true'
}

// Quickstart mode: the connection string itself, at creation (the key is then visible in the app settings).
var contentSettingsConnectionString = {
  WEBSITE_CONTENTAZUREFILECONNECTIONSTRING: 'DefaultEndpointsProtocol=https;AccountName=${contentStorage.name};AccountKey=${contentStorage.listKeys().keys[0].value};EndpointSuffix=${storageSuffix}'
  WEBSITE_CONTENTSHARE: contentShareName
  WEBSITE_CONTENTOVERVNET: '1'
}

// The loop runs over deployment-time values only (module parameters); the runtime connection string is appended.
var baseAppSettings = [for setting in items(baseSettings): {
  name: setting.key
  value: setting.value
}]
var creationAppSettings = concat(baseAppSettings, [
  {
    name: 'WEBSITE_CONTENTAZUREFILECONNECTIONSTRING'
    value: contentSettingsConnectionString.WEBSITE_CONTENTAZUREFILECONNECTIONSTRING
  }
  {
    name: 'WEBSITE_CONTENTSHARE'
    value: contentShareName
  }
  {
    name: 'WEBSITE_CONTENTOVERVNET'
    value: '1'
  }
])
var deferredSettings = union(baseSettings, contentSettingsKeyVault)

resource contentStorage 'Microsoft.Storage/storageAccounts@2025-06-01' existing = {
  name: contentStorageAccountName
}

// Access restrictions. Main site: with APIM in front, only APIM's subnet (private-endpoint traffic, when
// enablePrivateInbound, is not subject to these rules). SCM site: denied by default in every mode.
var mainRestrictions = restrictToApim ? [
  {
    name: 'AllowApiManagementSubnet'
    description: 'API Management outbound integration subnet'
    action: 'Allow'
    priority: 100
    vnetSubnetResourceId: apimSubnetId
  }
] : []

var scmRestrictions = [for (range, i) in scmAllowedIpRanges: {
  name: 'AllowDeployer${i}'
  description: 'Deployment client (scmAllowedIpRanges)'
  action: 'Allow'
  priority: 100 + i
  ipAddress: range
}]

resource site 'Microsoft.Web/sites@2025-03-01' = {
  // checkov:skip=CKV_AZURE_17: callers authenticate with Entra ID bearer tokens through Easy Auth (and optional gateway API keys); client certificates are not part of the design
  // checkov:skip=CKV_AZURE_222: public inbound is the enablePrivateInbound parameter (default public, as callers reach the gateway over the internet); when public, Easy Auth (Return401) guards every route except /api/health, and with APIM only APIM's subnet is admitted
  // checkov:skip=CKV_AZURE_212: Elastic Premium instances are set by the plan capacity and minimumElasticInstanceCount (always ready) and maximumElasticWorkerCount, not siteConfig.numberOfWorkers
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    reserved: true
    httpsOnly: true
    clientCertEnabled: false
    clientAffinityEnabled: false
    keyVaultReferenceIdentity: identityId
    virtualNetworkSubnetId: appSubnetId
    publicNetworkAccess: enablePrivateInbound ? 'Disabled' : 'Enabled'
    outboundVnetRouting: {
      allTraffic: true
      applicationTraffic: true
      contentShareTraffic: true
      imagePullTraffic: true
    }
    siteConfig: {
      linuxFxVersion: 'Python|3.11'
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      remoteDebuggingEnabled: false
      healthCheckPath: '/api/health'
      minimumElasticInstanceCount: minimumInstances
      preWarmedInstanceCount: preWarmedInstanceCount
      functionAppScaleLimit: maximumInstances
      detailedErrorLoggingEnabled: true
      httpLoggingEnabled: true
      requestTracingEnabled: true
      ipSecurityRestrictionsDefaultAction: restrictToApim ? 'Deny' : 'Allow'
      ipSecurityRestrictions: mainRestrictions
      scmIpSecurityRestrictionsUseMain: false
      scmIpSecurityRestrictionsDefaultAction: 'Deny'
      scmIpSecurityRestrictions: scmRestrictions
      // Key Vault mode: no appSettings on the site at all (the appsettings resource below owns them, so redeploying
      // the site doesn't reset them). Quickstart mode: every setting, the content share included, at creation.
      appSettings: deferContentShare ? null : creationAppSettings
    }
  }
}

// Key Vault mode: all app settings, the content share included, applied once the site (and, through main.bicep's
// dependencies, the vault's endpoint, the secret and its role assignment) exist. This resource owns the complete
// list: settings added by hand are removed by the next deployment.
resource appSettings 'Microsoft.Web/sites/config@2025-03-01' = if (deferContentShare) {
  // checkov:skip=CKV_AZURE_13: false positive - the appsettings config carries app settings only; Easy Auth is the authsettingsV2 resource below
  // checkov:skip=CKV_AZURE_63: false positive - httpLoggingEnabled belongs to siteConfig (set on the site), not to appsettings
  // checkov:skip=CKV_AZURE_65: false positive - detailedErrorLoggingEnabled belongs to siteConfig (set on the site), not to appsettings
  // checkov:skip=CKV_AZURE_66: false positive - requestTracingEnabled belongs to siteConfig (set on the site), not to appsettings
  // checkov:skip=CKV_AZURE_80: false positive - .NET framework version does not apply to a Python app or to appsettings
  // checkov:skip=CKV_AZURE_88: false positive - azureStorageAccounts (BYOS mounts) is not an appsettings property; no mounts are used
  // checkov:skip=CKV_AZURE_222: false positive - publicNetworkAccess is a site property (parameterised on the site), not an app setting
  parent: site
  name: 'appsettings'
  properties: deferredSettings
}

resource ftpPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2025-03-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2025-03-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

// Easy Auth v2. checkov evaluates every sites/config child with the v1 "authsettings"/"web" checks: the skips
// below are those false positives (the properties they look for do not exist on authsettingsV2).
resource auth 'Microsoft.Web/sites/config@2025-03-01' = {
  // checkov:skip=CKV_AZURE_13: false positive - the check reads v1 authsettings.enabled; v2 uses platform.enabled, which is true here
  // checkov:skip=CKV_AZURE_63: false positive - httpLoggingEnabled belongs to siteConfig (set on the site), not to authsettingsV2
  // checkov:skip=CKV_AZURE_65: false positive - detailedErrorLoggingEnabled belongs to siteConfig (set on the site), not to authsettingsV2
  // checkov:skip=CKV_AZURE_66: false positive - requestTracingEnabled belongs to siteConfig (set on the site), not to authsettingsV2
  // checkov:skip=CKV_AZURE_80: false positive - .NET framework version does not apply to a Python app or to authsettingsV2
  // checkov:skip=CKV_AZURE_88: false positive - azureStorageAccounts (BYOS mounts) is not an authsettingsV2 property; no mounts are used
  // checkov:skip=CKV_AZURE_222: false positive - publicNetworkAccess is a site property (parameterised on the site), not an authsettingsV2 property
  parent: site
  name: 'authsettingsV2'
  dependsOn: [
    appSettings
  ]
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: !enableGatewayApiKeys
      unauthenticatedClientAction: unauthenticatedClientAction
      // Liveness probe (App Service health check) stays outside Easy Auth; the function is anonymous.
      excludedPaths: [
        '/api/health'
      ]
    }
    httpSettings: {
      requireHttps: true
      routes: {
        apiPrefix: '/.auth'
      }
      forwardProxy: {
        convention: 'NoProxy'
      }
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        isAutoProvisioned: false
        registration: {
          clientId: authClientId
          openIdIssuer: openIdIssuer
        }
        validation: aadValidation
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: site
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'FunctionAppLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

module privateEndpoint 'private-endpoint.bicep' = if (enablePrivateInbound) {
  name: 'pe-${name}-sites'
  params: {
    name: 'pe-${name}-sites'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    privateLinkServiceId: site.id
    groupId: 'sites'
    privateDnsZoneIds: [
      sitesPrivateDnsZoneId
    ]
    applicationSecurityGroupIds: empty(sitesApplicationSecurityGroupId) ? [] : [
      sitesApplicationSecurityGroupId
    ]
  }
}

output id string = site.id
output name string = site.name
output defaultHostName string = site.properties.defaultHostName
output planId string = plan.id
