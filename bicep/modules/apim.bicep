// Optional: API Management (Standard v2) in front of the gateway. Outbound VNet integration lets it reach the
// function app over its private endpoint; callers' Entra tokens are validated and passed through unchanged,
// so the gateway still sees (and authorizes) the original caller.

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Name suffix shared by the resources of this deployment.')
param resourceToken string

@description('Publisher e-mail (required by API Management).')
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

var loginEndpoint = environment().authentication.loginEndpoint
var jwtPolicy = '<validate-jwt header-name="Authorization" failed-validation-httpcode="401" require-scheme="Bearer"><openid-config url="${loginEndpoint}${tenantId}/v2.0/.well-known/openid-configuration" /><audiences><audience>api://${authClientId}</audience><audience>${authClientId}</audience></audiences><issuers><issuer>${loginEndpoint}${tenantId}/v2.0</issuer></issuers></validate-jwt>'
var inboundPolicy = enableGatewayApiKeys ? '' : jwtPolicy
var policyXml = '<policies><inbound><base />${inboundPolicy}</inbound><backend><forward-request buffer-response="false" /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>'

resource apim 'Microsoft.ApiManagement/service@2024-05-01' = {
  // checkov:skip=CKV_AZURE_174: APIM is the public front door when enabled; the function app behind it can be private (enablePrivateInbound)
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
    path: 'api'
    protocols: [
      'https'
    ]
    serviceUrl: 'https://${functionAppHostName}/api'
    subscriptionRequired: false
  }
}

resource getAll 'Microsoft.ApiManagement/service/apis/operations@2024-05-01' = {
  parent: api
  name: 'get-all'
  properties: {
    displayName: 'GET'
    method: 'GET'
    urlTemplate: '/*'
  }
}

resource postAll 'Microsoft.ApiManagement/service/apis/operations@2024-05-01' = {
  parent: api
  name: 'post-all'
  properties: {
    displayName: 'POST'
    method: 'POST'
    urlTemplate: '/*'
  }
}

resource deleteAll 'Microsoft.ApiManagement/service/apis/operations@2024-05-01' = {
  parent: api
  name: 'delete-all'
  properties: {
    displayName: 'DELETE'
    method: 'DELETE'
    urlTemplate: '/*'
  }
}

resource apiPolicy 'Microsoft.ApiManagement/service/apis/policies@2024-05-01' = {
  parent: api
  name: 'policy'
  properties: {
    format: 'rawxml'
    value: policyXml
  }
}

output name string = apim.name
output gatewayUrl string = apim.properties.gatewayUrl
