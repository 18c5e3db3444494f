// Key Vault (RBAC, purge protection, no public access) holding the one secret this design needs: the key-based
// connection string of the Elastic Premium content share (Azure Files has no managed-identity mount).

@description('Key Vault name (3-24 characters).')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Content-share storage account whose connection string is stored (name computed in main.bicep).')
param storageAccountName string

@description('Principal ID of the function app identity (Key Vault Secrets User on the secret).')
param principalId string

@description('Resource ID of the function app identity: seeds the role-assignment name.')
param principalResourceId string

@description('Log Analytics workspace for the AuditEvent log.')
param logAnalyticsWorkspaceId string

@description('Private-endpoint subnet.')
param privateEndpointSubnetId string

@description('Resource ID of the privatelink.vaultcore.azure.net zone.')
param privateDnsZoneId string

var roleKeyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var contentSecretName = 'content-share-connection-string'

resource storage 'Microsoft.Storage/storageAccounts@2025-06-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2024-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Disabled'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
      ipRules: []
      virtualNetworkRules: []
    }
  }
}

resource contentSecret 'Microsoft.KeyVault/vaults/secrets@2024-11-01' = {
  // checkov:skip=CKV_AZURE_41: an expiry would silently break the content-share mount; the secret is re-written from the current storage key on every deployment (rotate the key, then redeploy)
  parent: vault
  name: contentSecretName
  properties: {
    contentType: 'text/plain; storage connection string (Azure Files content share)'
    value: 'DefaultEndpointsProtocol=https;AccountName=${storage.name};AccountKey=${storage.listKeys().keys[0].value};EndpointSuffix=${environment().suffixes.storage}'
  }
}

module privateEndpoint 'private-endpoint.bicep' = {
  name: 'pe-${name}-vault'
  params: {
    name: 'pe-${name}-vault'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    privateLinkServiceId: vault.id
    groupId: 'vault'
    privateDnsZoneIds: [
      privateDnsZoneId
    ]
  }
}

// Least privilege: the identity can read this one secret, not the whole vault.
resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(contentSecret.id, principalResourceId, roleKeyVaultSecretsUser)
  scope: contentSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleKeyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Every data-plane access (secret reads by the platform, administrative changes) to Log Analytics.
resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'AuditEvent'
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

output id string = vault.id
output name string = vault.name
output contentSecretUri string = contentSecret.properties.secretUri
