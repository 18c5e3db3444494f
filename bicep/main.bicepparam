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

// Models: name, version, SKU and capacity from the environment (azd env set ...). Defaults are models open to new
// customers on 2026-12-01 (docs/infrastructure.md, "Models"); scripts/preflight.sh checks them in the target region.
param openAiLocation = readEnvironmentVariable('AZURE_OPENAI_LOCATION', '')
param openAiApiVersion = readEnvironmentVariable('AZURE_OPENAI_API_VERSION', '2025-04-01-preview')
param openAiDeployments = [
  {
    name: readEnvironmentVariable('AZURE_OPENAI_CHAT_DEPLOYMENT', 'gpt-5.4-mini')
    model: {
      format: 'OpenAI'
      name: readEnvironmentVariable('AZURE_OPENAI_CHAT_MODEL', 'gpt-5.4-mini')
      version: readEnvironmentVariable('AZURE_OPENAI_CHAT_MODEL_VERSION', '2026-03-17')
    }
    sku: {
      name: readEnvironmentVariable('AZURE_OPENAI_CHAT_SKU', 'GlobalStandard')
      capacity: int(readEnvironmentVariable('AZURE_OPENAI_CHAT_CAPACITY', '50'))
    }
  }
  {
    name: readEnvironmentVariable('AZURE_OPENAI_EMBEDDING_DEPLOYMENT', 'text-embedding-3-small')
    model: {
      format: 'OpenAI'
      name: readEnvironmentVariable('AZURE_OPENAI_EMBEDDING_MODEL', 'text-embedding-3-small')
      version: readEnvironmentVariable('AZURE_OPENAI_EMBEDDING_MODEL_VERSION', '1')
    }
    sku: {
      name: readEnvironmentVariable('AZURE_OPENAI_EMBEDDING_SKU', 'GlobalStandard')
      capacity: int(readEnvironmentVariable('AZURE_OPENAI_EMBEDDING_CAPACITY', '50'))
    }
  }
]
// Backend pool (docs/backend-pools.md): several accounts as JSON, e.g.
// azd env set AZURE_OPENAI_ACCOUNTS '[{"label":"swc","weight":3},{"label":"frc","location":"francecentral","priority":2}]'
// Unset or '[]': the single account above, as before. scripts/preflight.sh checks labels, priorities and weights.
param openAiAccounts = json(readEnvironmentVariable('AZURE_OPENAI_ACCOUNTS', '[]'))
param resourceNameSalt = readEnvironmentVariable('RESOURCE_NAME_SALT', '')

param zoneRedundant = bool(readEnvironmentVariable('ZONE_REDUNDANT', 'false'))
param minimumElasticInstanceCount = int(readEnvironmentVariable('MINIMUM_ELASTIC_INSTANCE_COUNT', '1'))
// Plan size and the worker processes per instance derived from it (0 = one per vCPU); docs/tuning.md.
param planSku = readEnvironmentVariable('PLAN_SKU', 'EP1')
param workerProcessCount = int(readEnvironmentVariable('WORKER_PROCESS_COUNT', '0'))
param preWarmedInstanceCount = int(readEnvironmentVariable('PREWARMED_INSTANCE_COUNT', '1'))
param storageSkuName = readEnvironmentVariable('STORAGE_SKU', 'Standard_LRS')
param contentShareMode = readEnvironmentVariable('CONTENT_SHARE_MODE', 'keyVaultReferenceAfterCreation')

// Network: callers of the private endpoint (peered VNets / VPN), deployers allowed on the SCM site, egress.
param privateInboundAllowedSourcePrefixes = empty(readEnvironmentVariable('PRIVATE_INBOUND_ALLOWED_PREFIXES', '')) ? [] : split(readEnvironmentVariable('PRIVATE_INBOUND_ALLOWED_PREFIXES', ''), ',')
param scmAllowedIpRanges = empty(readEnvironmentVariable('SCM_ALLOWED_IP_RANGES', '')) ? [] : split(readEnvironmentVariable('SCM_ALLOWED_IP_RANGES', ''), ',')
param restrictEgress = bool(readEnvironmentVariable('RESTRICT_EGRESS', 'true'))
param egressAllowedAddressPrefixes = empty(readEnvironmentVariable('EGRESS_ALLOWED_PREFIXES', '')) ? [] : split(readEnvironmentVariable('EGRESS_ALLOWED_PREFIXES', ''), ',')
param jumpboxEncryptionAtHost = bool(readEnvironmentVariable('JUMPBOX_ENCRYPTION_AT_HOST', 'false'))
param gatewayPrices = readEnvironmentVariable('GATEWAY_PRICES', '')
