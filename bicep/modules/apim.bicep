// Optional: API Management (Standard v2) in front of the gateway. Outbound VNet integration lets it reach the
// function app over its private endpoint or, with public inbound, through the function app's access restrictions,
// which admit only APIM's subnet. Callers' Entra tokens are validated and passed through unchanged, so the gateway
// still sees (and authorizes) the original caller.
// The operations come from ../apim-routes.json, generated from the app's own route table by
// scripts/gen_apim_routes.py (tests/test_apim_routes.py fails when the two differ): every function route and
// method, PUT included, and nothing else.

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Name suffix shared by the resources of this deployment.')
param resourceToken string

@description('Publisher e-mail (required by API Management). An empty value fails validation here; scripts/preflight.sh checks it before deploying.')
@minLength(3)
param publisherEmail string

@description('Publisher name.')
param publisherName string

@description('Outbound-integration subnet (delegated to Microsoft.Web/serverFarms).')
param subnetId string

@description('Default host name of the function app.')
param functionAppHostName string

@description('Entra tenant ID.')
param tenantId string

@description('Client ID of the gateway API app registration.')
param authClientId string

@description('When true, callers may use gateway API keys; APIM then does not require a bearer token.')
param enableGatewayApiKeys bool = false

@description('Application Insights component name (APIM logger; Entra ID-authenticated through APIM\'s identity).')
param appInsightsName string

@description('Application Insights connection string.')
param appInsightsConnectionString string

@description('Log Analytics workspace for the gateway logs.')
param logAnalyticsWorkspaceId string

var routes = loadJsonContent('../apim-routes.json')
var roleMonitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
var loginEndpoint = environment().authentication.loginEndpoint
var jwtPolicy = '<validate-jwt header-name="Authorization" failed-validation-httpcode="401" require-scheme="Bearer"><openid-config url="${loginEndpoint}${tenantId}/v2.0/.well-known/openid-configuration" /><audiences><audience>api://${authClientId}</audience><audience>${authClientId}</audience></audiences><issuers><issuer>${loginEndpoint}${tenantId}/v2.0</issuer></issuers></validate-jwt>'
var inboundPolicy = enableGatewayApiKeys ? '' : jwtPolicy
var policyXml = '<policies><inbound><base />${inboundPolicy}</inbound><backend><forward-request buffer-response="false" /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>'

resource apim 'Microsoft.ApiManagement/service@2024-05-01' = {
  // checkov:skip=CKV_AZURE_174: APIM is the public front door when enabled; the function app behind it admits only APIM (access restrictions) or is private (enablePrivateInbound)
  name: 'apim-${resourceToken}'
  location: location
  tags: tags
  sku: {
    name: 'StandardV2'
    capacity: 1
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    publisherEmail: publisherEmail
    publisherName: publisherName
    virtualNetworkType: 'External'
    virtualNetworkConfiguration: {
      subnetResourceId: subnetId
    }
    customProperties: {
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls10': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls11': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls10': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls11': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Ssl30': 'false'
    }
  }
}

resource api 'Microsoft.ApiManagement/service/apis@2024-05-01' = {
  parent: apim
  name: 'ai-gateway'
  properties: {
    displayName: 'AI gateway'
    path: routes.routePrefix
    protocols: [
      'https'
    ]
    serviceUrl: 'https://${functionAppHostName}/${routes.routePrefix}'
    subscriptionRequired: false
  }
}

// One operation per (function route, method) of the app.
resource operations 'Microsoft.ApiManagement/service/apis/operations@2024-05-01' = [for op in routes.operations: {
  parent: api
  name: op.name
  properties: {
    displayName: op.displayName
    method: op.method
    urlTemplate: op.urlTemplate
    templateParameters: op.templateParameters
  }
}]

resource apiPolicy 'Microsoft.ApiManagement/service/apis/policies@2024-05-01' = {
  parent: api
  name: 'policy'
  properties: {
    format: 'rawxml'
    value: policyXml
  }
}

// Telemetry to Application Insights, authenticated with APIM's managed identity (the component has local auth off).
resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, apim.id, roleMonitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleMonitoringMetricsPublisher)
    principalId: apim.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource logger 'Microsoft.ApiManagement/service/loggers@2024-05-01' = {
  parent: apim
  name: 'appinsights'
  properties: {
    loggerType: 'applicationInsights'
    resourceId: appInsights.id
    credentials: {
      connectionString: appInsightsConnectionString
      identityClientId: 'SystemAssigned'
    }
  }
  dependsOn: [
    metricsPublisher
  ]
}

// Request telemetry for every API (headers and bodies are not logged).
resource diagnostic 'Microsoft.ApiManagement/service/diagnostics@2024-05-01' = {
  parent: apim
  name: 'applicationinsights'
  properties: {
    loggerId: logger.id
    alwaysLog: 'allErrors'
    httpCorrelationProtocol: 'W3C'
    verbosity: 'information'
    logClientIp: false
    sampling: {
      samplingType: 'fixed'
      percentage: 100
    }
  }
}

// Gateway logs (every request through APIM) to Log Analytics.
resource gatewayLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: apim
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'GatewayLogs'
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

output name string = apim.name
output id string = apim.id
output gatewayUrl string = apim.properties.gatewayUrl
output operationCount int = length(routes.operations)
