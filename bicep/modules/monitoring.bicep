// Log Analytics + workspace-based Application Insights, both closed to public ingestion and query, reached through
// an Azure Monitor Private Link Scope (private-only access modes) and its private endpoint with the five zones.
// Application Insights accepts Entra ID-authenticated telemetry only (Monitoring Metrics Publisher for the app).

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Name suffix shared by the resources of this deployment.')
param resourceToken string

@description('Application Insights component name (computed in main.bicep; API Management refers to it by name).')
param appInsightsName string

@description('Log retention in days.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

@description('Principal ID of the function app identity.')
param principalId string

@description('Resource ID of the function app identity: seeds the role-assignment name.')
param principalResourceId string

@description('Private-endpoint subnet.')
param privateEndpointSubnetId string

@description('Resource IDs of the monitor, oms, ods, agentsvc and (shared) blob zones.')
param privateDnsZoneIds array

var roleMonitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource workspace 'Microsoft.OperationalInsights/workspaces@2025-07-01' = {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    publicNetworkAccessForIngestion: 'Disabled'
    publicNetworkAccessForQuery: 'Disabled'
    features: {
      enableLogAccessUsingOnlyResourcePermissions: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    IngestionMode: 'LogAnalytics'
    DisableLocalAuth: true
    publicNetworkAccessForIngestion: 'Disabled'
    publicNetworkAccessForQuery: 'Disabled'
  }
}

resource privateLinkScope 'Microsoft.Insights/privateLinkScopes@2021-07-01-preview' = {
  name: 'ampls-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    accessModeSettings: {
      ingestionAccessMode: 'PrivateOnly'
      queryAccessMode: 'PrivateOnly'
    }
  }
}

resource scopedWorkspace 'Microsoft.Insights/privateLinkScopes/scopedResources@2021-07-01-preview' = {
  parent: privateLinkScope
  name: 'scoped-${workspace.name}'
  properties: {
    linkedResourceId: workspace.id
  }
}

resource scopedAppInsights 'Microsoft.Insights/privateLinkScopes/scopedResources@2021-07-01-preview' = {
  parent: privateLinkScope
  name: 'scoped-${appInsights.name}'
  properties: {
    linkedResourceId: appInsights.id
  }
}

module privateEndpoint 'private-endpoint.bicep' = {
  name: 'pe-ampls-${resourceToken}'
  params: {
    name: 'pe-ampls-${resourceToken}'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    privateLinkServiceId: privateLinkScope.id
    groupId: 'azuremonitor'
    privateDnsZoneIds: privateDnsZoneIds
  }
  dependsOn: [
    scopedWorkspace
    scopedAppInsights
  ]
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalResourceId, roleMonitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleMonitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output workspaceId string = workspace.id
output workspaceName string = workspace.name
output appInsightsId string = appInsights.id
output appInsightsName string = appInsights.name
output appInsightsConnectionString string = appInsights.properties.ConnectionString
output privateLinkScopeId string = privateLinkScope.id
