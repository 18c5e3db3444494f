#!/usr/bin/env bash
# Deploy the gateway without azd: infrastructure (bicep/main.bicep + main.bicepparam), then the code.
#
#   scripts/deploy.sh -g <resource-group> [-l <location>] [--skip-infra] [--skip-build] [--local-build]
#
#   --skip-infra   code only (reads the function app name from the last deployment's outputs)
#   --skip-build   reuse dist/function-app.zip instead of packaging again
#   --local-build  vendor the Python dependencies into the zip here (manylinux wheels for Python 3.11)
#                  instead of the remote (Oryx) build on the function app
#
# Needs: az CLI (logged in), zip, python3; environment: AZURE_ENV_NAME, GATEWAY_AUTH_CLIENT_ID (and the optional
# variables read by bicep/main.bicepparam). scripts/preflight.sh runs first (parameters, model availability).
# The package is the project minus .funcignore (scripts/package_files.py) - the same files azd deploys.
# The SCM (deployment) site admits only SCM_ALLOWED_IP_RANGES, or traffic through the private endpoint: run the
# code step from an allowed address or from inside the VNet (e.g. the jumpbox).
set -euo pipefail
cd "$(dirname "$0")/.."

RG="" LOCATION="" SKIP_INFRA=0 SKIP_BUILD=0 LOCAL_BUILD=0
DEPLOYMENT_NAME="ai-gateway"
ZIP=dist/function-app.zip

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    -g|--resource-group) RG="$2"; shift 2 ;;
    -l|--location) LOCATION="$2"; shift 2 ;;
    --skip-infra) SKIP_INFRA=1; shift ;;
    --skip-build) SKIP_BUILD=1; shift ;;
    --local-build) LOCAL_BUILD=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[ -n "$RG" ] || { echo "--resource-group is required" >&2; usage >&2; exit 2; }
command -v az >/dev/null || { echo "az CLI not found" >&2; exit 1; }
az account show --query id -o tsv >/dev/null || { echo "run 'az login' first" >&2; exit 1; }

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

# 2. Package ---------------------------------------------------------------------------------------------------
if [ "$SKIP_BUILD" -eq 1 ]; then
  [ -f "$ZIP" ] || { echo "--skip-build: $ZIP does not exist" >&2; exit 1; }
  echo "== reuse $ZIP"
else
  echo "== package $ZIP"
  rm -rf dist/build && mkdir -p dist/build
  python3 scripts/package_files.py --copy-to dist/build
  if [ "$LOCAL_BUILD" -eq 1 ]; then
    python3 -m pip install --quiet --disable-pip-version-check -r requirements.txt \
      --target dist/build/.python_packages/lib/site-packages \
      --platform manylinux2014_x86_64 --implementation cp --python-version 3.11 --only-binary=:all:
  fi
  find dist/build -name '__pycache__' -type d -prune -exec rm -rf {} +
  rm -f "$ZIP"
  (cd dist/build && zip -qr "../$(basename "$ZIP")" .)
fi

# 3. Code --------------------------------------------------------------------------------------------------------
if [ "$(az functionapp show -g "$RG" -n "$APP" --query publicNetworkAccess -o tsv)" = "Disabled" ]; then
  echo "note: $APP has public network access disabled; this step only works from inside the VNet (jumpbox)."
fi
REMOTE_BUILD=true
[ "$LOCAL_BUILD" -eq 1 ] && REMOTE_BUILD=false
echo "== deploy code to $APP (remote build: $REMOTE_BUILD)"
az functionapp deployment source config-zip -g "$RG" -n "$APP" --src "$ZIP" --build-remote "$REMOTE_BUILD" -o none

echo "deployed: $GATEWAY_URL"
echo "smoke test: python scripts/smoke_test.py --gateway-url $GATEWAY_URL --client-id <caller-app-id> --device-code"
