// Linux Elastic Premium (EP1) plan and the Python function app: user-assigned identity, regional VNet
// integration with all outbound traffic (and the content share) routed through the VNet, HTTPS only, TLS 1.2,
// FTPS and basic publishing credentials off, identity-based host storage, Easy Auth (Entra ID, v2 issuer).

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

@description('Storage account name (host storage and content share).')
param storageAccountName string

@description('Content share name (pre-created in storage).')
param contentShareName string

@description('Key Vault secret URI of the content-share connection string.')
param contentShareSecretUri string

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

@description('Disable public inbound access and add a private endpoint for the app (private function URLs).')
param enablePrivateInbound bool = false

@description('Maximum burst instances of the Elastic Premium plan.')
@minValue(1)
@maxValue(100)
param maximumElasticWorkerCount int = 20

@description('Always-ready (pre-warmed minimum) instances.')
@minValue(1)
@maxValue(20)
param minimumElasticInstanceCount int = 1

@description('Zone-redundant plan (needs a ZRS storage account and at least 3 instances).')
param zoneRedundant bool = false

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

resource plan 'Microsoft.Web/serverfarms@2025-03-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy is the zoneRedundant parameter (needs ZRS storage and 3+ instances); off by default for cost
  name: 'plan-${resourceToken}'
  location: location
  tags: tags
  kind: 'elastic'
  sku: {
    name: 'EP1'
    tier: 'ElasticPremium'
    family: 'EP'
  }
  properties: {
    reserved: true
    maximumElasticWorkerCount: maximumElasticWorkerCount
    zoneRedundant: zoneRedundant
  }
}

var appSettings = [
  {
    name: 'FUNCTIONS_EXTENSION_VERSION'
    value: '~4'
  }
  {
    name: 'FUNCTIONS_WORKER_RUNTIME'
    value: 'python'
  }
  {
    // HTTP streaming (azurefunctions-extensions-http-fastapi) needs init indexing on Python <= 3.12.
    name: 'PYTHON_ENABLE_INIT_INDEXING'
    value: '1'
  }
  // Host storage through the user-assigned identity (no AzureWebJobsStorage connection string).
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identityClientId
  }
  {
    name: 'AzureWebJobsStorage__blobServiceUri'
    value: 'https://${storageAccountName}.blob.${storageSuffix}'
  }
  {
    name: 'AzureWebJobsStorage__queueServiceUri'
    value: 'https://${storageAccountName}.queue.${storageSuffix}'
  }
  {
    name: 'AzureWebJobsStorage__tableServiceUri'
    value: 'https://${storageAccountName}.table.${storageSuffix}'
  }
  // Elastic Premium content share: key-based (Azure Files has no managed-identity mount), kept in Key Vault.
  {
    name: 'WEBSITE_CONTENTAZUREFILECONNECTIONSTRING'
    value: '@Microsoft.KeyVault(SecretUri=${contentShareSecretUri})'
  }
  {
    name: 'WEBSITE_CONTENTSHARE'
    value: contentShareName
  }
  {
    // The share is pre-created in Bicep; the creation-time validation cannot resolve a Key Vault reference.
    name: 'WEBSITE_SKIP_CONTENTSHARE_VALIDATION'
    value: '1'
  }
  {
    // Legacy spelling of outboundVnetRouting.contentShareTraffic, kept for hosts that only honour the setting.
    name: 'WEBSITE_CONTENTOVERVNET'
    value: '1'
  }
  {
    name: 'SCM_DO_BUILD_DURING_DEPLOYMENT'
    value: 'true'
  }
  {
    name: 'ENABLE_ORYX_BUILD'
    value: 'true'
  }
  // Telemetry: the Python worker configures Azure Monitor; Entra ID-authenticated ingestion (local auth is off).
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsightsConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identityClientId};Authorization=AAD'
  }
  {
    name: 'PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY'
    value: 'true'
  }
  // The gateway's own settings.
  {
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
  {
    name: 'AZURE_OPENAI_ENDPOINT'
    value: openAiEndpoint
  }
  {
    name: 'AZURE_OPENAI_API_VERSION'
    value: openAiApiVersion
  }
  {
    name: 'GATEWAY_ALLOWED_DEPLOYMENTS'
    value: allowedDeployments
  }
  {
    name: 'GATEWAY_STORAGE_TABLE_ENDPOINT'
    value: 'https://${storageAccountName}.table.${storageSuffix}'
  }
  {
    name: 'GATEWAY_AUTH_TENANT_IDS'
    value: authTenantId
  }
  {
    name: 'GATEWAY_AUTH_CLIENT_ID'
    value: authClientId
  }
  {
    name: 'GATEWAY_API_KEYS_ENABLED'
    value: enableGatewayApiKeys ? 'true' : 'false'
  }
  {
    name: 'GATEWAY_PRICES'
    value: gatewayPrices
  }
]

resource site 'Microsoft.Web/sites@2025-03-01' = {
  // checkov:skip=CKV_AZURE_17: callers authenticate with Entra ID bearer tokens through Easy Auth (and optional gateway API keys); client certificates are not part of the design
  // checkov:skip=CKV_AZURE_222: public inbound is the enablePrivateInbound parameter (default public, as callers reach the gateway over the internet); when public, Easy Auth (Return401) guards every route except /api/health
  // checkov:skip=CKV_AZURE_212: Elastic Premium instances are set by minimumElasticInstanceCount (always ready) and maximumElasticWorkerCount, not siteConfig.numberOfWorkers
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
      minimumElasticInstanceCount: minimumElasticInstanceCount
      functionAppScaleLimit: maximumElasticWorkerCount
      detailedErrorLoggingEnabled: true
      httpLoggingEnabled: true
      requestTracingEnabled: true
      appSettings: appSettings
    }
  }
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
  }
}

output id string = site.id
output name string = site.name
output defaultHostName string = site.properties.defaultHostName
output planId string = plan.id
