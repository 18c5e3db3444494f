// Azure OpenAI: custom subdomain (required for Entra ID auth and private endpoints), no public network access,
// no API keys, model deployments from a parameter, private endpoint ('account') registered in the OpenAI and
// Cognitive Services zones, and Cognitive Services OpenAI User for the function app identity.

@description('Account name; also the custom subdomain (https://<name>.openai.azure.com).')
param name string

@description('Azure region of the account (model availability differs per region).')
param location string

@description('Region of the private endpoint: the VNet\'s region, which may differ from the account\'s.')
param privateEndpointLocation string

@description('Tags for every resource.')
param tags object = {}

@description('Model deployments: [{ name, model: { format, name, version }, sku: { name, capacity } }].')
param deployments array

@description('Principal ID of the function app identity.')
param principalId string

@description('Resource ID of the function app identity: seeds the role-assignment name.')
param principalResourceId string

@description('Log Analytics workspace for the audit and request logs.')
param logAnalyticsWorkspaceId string

@description('Private-endpoint subnet.')
param privateEndpointSubnetId string

@description('Resource IDs of privatelink.openai.azure.com and privatelink.cognitiveservices.azure.com.')
param privateDnsZoneIds array

var roleCognitiveServicesOpenAIUser = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'

resource account 'Microsoft.CognitiveServices/accounts@2025-06-01' = {
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: 'S0'
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    customSubDomainName: name
    publicNetworkAccess: 'Disabled'
    disableLocalAuth: true
    networkAcls: {
      defaultAction: 'Deny'
      ipRules: []
      virtualNetworkRules: []
    }
    restrictOutboundNetworkAccess: true
    allowedFqdnList: []
  }
}

@batchSize(1)
resource modelDeployments 'Microsoft.CognitiveServices/accounts/deployments@2025-06-01' = [for deployment in deployments: {
  parent: account
  name: deployment.name
  sku: deployment.sku
  properties: {
    model: deployment.model
    versionUpgradeOption: 'OnceNewDefaultVersionAvailable'
  }
}]

module privateEndpoint 'private-endpoint.bicep' = {
  name: 'pe-${name}-account'
  params: {
    name: 'pe-${name}-account'
    location: privateEndpointLocation
    tags: tags
    subnetId: privateEndpointSubnetId
    privateLinkServiceId: account.id
    groupId: 'account'
    privateDnsZoneIds: privateDnsZoneIds
  }
}

resource openAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalResourceId, roleCognitiveServicesOpenAIUser)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleCognitiveServicesOpenAIUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Control-plane audit and data-plane request logs to Log Analytics (no prompt or completion content).
resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: account
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'Audit'
        enabled: true
      }
      {
        category: 'RequestResponse'
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

output id string = account.id
output name string = account.name
output endpoint string = 'https://${name}.openai.azure.com'
