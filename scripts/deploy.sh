#!/usr/bin/env bash
# Deploy the gateway without azd: infrastructure (bicep/main.bicep + main.bicepparam), then the code.
#
#   scripts/deploy.sh -g <resource-group> [-l <location>] [--skip-infra] [--skip-build]
#
#   --skip-infra   code only (reads the function app name from the last deployment's outputs)
#   --skip-build   reuse dist/function-app.zip instead of packaging again
#
# Needs: az CLI (logged in), python3 with pip; environment: AZURE_ENV_NAME, GATEWAY_AUTH_CLIENT_ID (and the
# optional variables read by bicep/main.bicepparam). The same steps as azd's hooks (azure.yaml), in order:
# scripts/preflight.sh (parameters, deploy path, models, quota, soft-deleted names), the infrastructure,
# scripts/postprovision.sh (the app's Key Vault references resolved), scripts/build_package.py (the project minus
# .funcignore with the requirements as manylinux wheels in .python_packages - the app never builds in Azure),
# scripts/preflight.sh --deploy-path (the SCM site reachable from here), then the zip upload.
# This script sets no app setting: SCM_DO_BUILD_DURING_DEPLOYMENT=false comes from the Bicep, and the upload
# refuses to run when the app does not have it.
set -euo pipefail
cd "$(dirname "$0")/.."

RG="" LOCATION="" SKIP_INFRA=0 SKIP_BUILD=0
DEPLOYMENT_NAME="ai-gateway"
ZIP=dist/function-app.zip

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    -g|--resource-group) RG="$2"; shift 2 ;;
    -l|--location) LOCATION="$2"; shift 2 ;;
    --skip-infra) SKIP_INFRA=1; shift ;;
    --skip-build) SKIP_BUILD=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[ -n "$RG" ] || { echo "--resource-group is required" >&2; usage >&2; exit 2; }
command -v az >/dev/null || { echo "az CLI not found" >&2; exit 1; }
az account show --query id -o tsv >/dev/null || { echo "run 'az login' first" >&2; exit 1; }
export AZURE_RESOURCE_GROUP="$RG"
# SCM_ALLOW_DEPLOYER_IP=true (consent): this machine's public address becomes the SCM site's allowed range.
if [ "$(echo "${SCM_ALLOW_DEPLOYER_IP:-false}" | tr '[:upper:]' '[:lower:]')" = "true" ] && [ -z "${SCM_ALLOWED_IP_RANGES:-}" ] \
  && [ "$(echo "${ENABLE_PRIVATE_INBOUND:-false}" | tr '[:upper:]' '[:lower:]')" != "true" ]; then
  SCM_ALLOWED_IP_RANGES="$(python3 tools/preflight.py deployer-ip)" || { echo "could not read this machine's public address" >&2; exit 1; }
  export SCM_ALLOWED_IP_RANGES
  echo "SCM_ALLOW_DEPLOYER_IP=true: SCM_ALLOWED_IP_RANGES=$SCM_ALLOWED_IP_RANGES"
fi

# 1. Infrastructure ------------------------------------------------------------------------------------------
if [ "$SKIP_INFRA" -eq 0 ]; then
  : "${AZURE_ENV_NAME:?set AZURE_ENV_NAME (part of every resource name)}"
  : "${GATEWAY_AUTH_CLIENT_ID:?set GATEWAY_AUTH_CLIENT_ID (the gateway API app registration, docs/deploy.md)}"
  echo "== preflight"
  bash scripts/preflight.sh --location "${LOCATION:-$(az group show -n "$RG" --query location -o tsv 2>/dev/null)}" \
    || { echo "preflight failed: nothing was deployed" >&2; exit 1; }
  if [ "$(az group exists -n "$RG")" != "true" ]; then
    [ -n "$LOCATION" ] || { echo "resource group $RG does not exist: pass --location to create it" >&2; exit 2; }
    az group create -n "$RG" -l "$LOCATION" --tags "azd-env-name=$AZURE_ENV_NAME" -o none
  fi
  echo "== what-if"
  az deployment group what-if -g "$RG" -n "$DEPLOYMENT_NAME" \
    --template-file bicep/main.bicep --parameters bicep/main.bicepparam --result-format ResourceIdOnly
  echo "== deploy infrastructure"
  az deployment group create -g "$RG" -n "$DEPLOYMENT_NAME" \
    --template-file bicep/main.bicep --parameters bicep/main.bicepparam -o none
fi

output() { az deployment group show -g "$RG" -n "$DEPLOYMENT_NAME" --query "properties.outputs.$1.value" -o tsv; }
APP="$(output AZURE_FUNCTION_APP_NAME)"
GATEWAY_URL="$(output GATEWAY_URL)"
[ -n "$APP" ] || { echo "no AZURE_FUNCTION_APP_NAME output in deployment $DEPLOYMENT_NAME" >&2; exit 1; }
export AZURE_FUNCTION_APP_NAME="$APP"

if [ "$SKIP_INFRA" -eq 0 ]; then
  echo "== Key Vault references"
  bash scripts/postprovision.sh || { echo "the app's settings are not usable yet: no code was deployed" >&2; exit 1; }
fi

# 2. Package ---------------------------------------------------------------------------------------------------
if [ "$SKIP_BUILD" -eq 1 ]; then
  [ -f "$ZIP" ] || { echo "--skip-build: $ZIP does not exist" >&2; exit 1; }
  echo "== reuse $ZIP"
else
  echo "== package $ZIP"
  python3 scripts/build_package.py --zip "$ZIP"
fi

# 3. Code --------------------------------------------------------------------------------------------------------
echo "== deploy path"
bash scripts/preflight.sh --deploy-path || { echo "no code was deployed" >&2; exit 1; }
build="$(az functionapp config appsettings list -g "$RG" -n "$APP" \
  --query "[?name=='SCM_DO_BUILD_DURING_DEPLOYMENT'].value | [0]" -o tsv)"
if [ "$(echo "$build" | tr '[:upper:]' '[:lower:]')" != "false" ]; then
  echo "$APP has SCM_DO_BUILD_DURING_DEPLOYMENT='$build', not false: provision first (the Bicep sets it); the package" >&2
  echo "carries its requirements and a build in Azure can't reach a package index from the private network" >&2
  exit 1
fi
echo "== deploy code to $APP (no build in Azure)"
# --build-remote false matches the app setting above, so the CLI changes no setting.
az functionapp deployment source config-zip -g "$RG" -n "$APP" --src "$ZIP" --build-remote false -o none

echo "deployed: $GATEWAY_URL"
echo "smoke test: python scripts/smoke_test.py --gateway-url $GATEWAY_URL --client-id <caller-app-id> --device-code"
