// The Elastic Premium content share (WEBSITE_CONTENTAZUREFILECONNECTIONSTRING + WEBSITE_CONTENTSHARE) in an account
// of its own. Azure Files can't be mounted with a managed identity, so this account must allow shared-key access;
// keeping it apart leaves the host/gateway account (tables: keys, policies, quotas, usage) keyless. File-only: it
// holds nothing but the content share and is reachable through one private endpoint, 'file'.

@description('Storage account name (3-24 lowercase letters and digits).')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Replication. Zone-redundant plans need a ZRS account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_LRS'

@description('Name of the Azure Files share used as the function app content share (WEBSITE_CONTENTSHARE).')
param contentShareName string

@description('Private-endpoint subnet.')
param privateEndpointSubnetId string

@description('Resource ID of the privatelink.file zone.')
param fileDnsZoneId string

@description('Log Analytics workspace for the Azure Files logs.')
param logAnalyticsWorkspaceId string

resource storage 'Microsoft.Storage/storageAccounts@2025-06-01' = {
  // checkov:skip=CKV_AZURE_206: geo-replication is a parameter (skuName); the share holds only the deployed package, which a redeployment restores
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    publicNetworkAccess: 'Disabled'
    allowBlobPublicAccess: false
    // Required: the platform mounts the content share with the account key (no managed-identity mount).
    allowSharedKeyAccess: true
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    isLocalUserEnabled: false
    isSftpEnabled: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    networkAcls: {
      defaultAction: 'Deny'
      // Has no effect while publicNetworkAccess is Disabled (private endpoint only).
      bypass: 'AzureServices'
      ipRules: []
      virtualNetworkRules: []
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        file: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource fileService 'Microsoft.Storage/storageAccounts/fileServices@2025-06-01' = {
  parent: storage
  name: 'default'
  properties: {
    shareDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

// Pre-created: the platform cannot create the share through a locked-down account (403), and
// WEBSITE_SKIP_CONTENTSHARE_VALIDATION=1 (needed for the Key Vault reference) makes it skip creation anyway.
resource contentShare 'Microsoft.Storage/storageAccounts/fileServices/shares@2025-06-01' = {
  parent: fileService
  name: contentShareName
  properties: {
    shareQuota: 100
    enabledProtocols: 'SMB'
  }
}

module privateEndpoint 'private-endpoint.bicep' = {
  name: 'pe-${name}-file'
  params: {
    name: 'pe-${name}-file'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    privateLinkServiceId: storage.id
    groupId: 'file'
    privateDnsZoneIds: [
      fileDnsZoneId
    ]
  }
}

resource fileDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: fileService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'StorageRead'
        enabled: true
      }
      {
        category: 'StorageWrite'
        enabled: true
      }
      {
        category: 'StorageDelete'
        enabled: true
      }
    ]
  }
}

output id string = storage.id
output name string = storage.name
output contentShareName string = contentShare.name
