// Parameters for main.bicep. azd reads this file (readEnvironmentVariable takes values from the azd
// environment); az deployment group create -p bicep/main.bicepparam reads the same variables from the shell.
using './main.bicep'

param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', 'aigw')

// App registration of the gateway API (docs/deploy.md, step 1). No default: the deployment fails without it.
param gatewayClientId = readEnvironmentVariable('GATEWAY_AUTH_CLIENT_ID', '')

param enableGatewayApiKeys = bool(readEnvironmentVariable('GATEWAY_API_KEYS_ENABLED', 'false'))
param enablePrivateInbound = bool(readEnvironmentVariable('ENABLE_PRIVATE_INBOUND', 'false'))
param enableJumpbox = bool(readEnvironmentVariable('ENABLE_JUMPBOX', 'false'))
param jumpboxSshPublicKey = readEnvironmentVariable('JUMPBOX_SSH_PUBLIC_KEY', '')
param enableApim = bool(readEnvironmentVariable('ENABLE_APIM', 'false'))
param apimPublisherEmail = readEnvironmentVariable('APIM_PUBLISHER_EMAIL', '')

param openAiApiVersion = '2024-10-21'
param openAiDeployments = [
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
  {
    name: 'text-embedding-3-small'
    model: {
      format: 'OpenAI'
      name: 'text-embedding-3-small'
      version: '1'
    }
    sku: {
      name: 'Standard'
      capacity: 50
    }
  }
]
param gatewayPrices = readEnvironmentVariable('GATEWAY_PRICES', '')
