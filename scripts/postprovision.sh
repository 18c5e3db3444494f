#!/usr/bin/env bash
# After provisioning, before any code is deployed: the app's Key Vault references (the content share's connection
# string, in the default CONTENT_SHARE_MODE) must resolve, or the host can't mount its content share and the app
# does not start. Asks App Service to resolve them again now (they are otherwise cached for up to 24 hours), then
# reads their status until every one is Resolved or KV_REFERENCE_TIMEOUT seconds (default 600) have passed - the
# identity's role on the secret can take minutes to become effective.
# Run by azd (azure.yaml hooks.postprovision) and by scripts/deploy.sh. Needs AZURE_RESOURCE_GROUP and
# AZURE_FUNCTION_APP_NAME (Bicep outputs, in the azd environment).
#   POST <app id>/config/configreferences/appsettings/refresh   (Learn: "Use Key Vault references as app settings")
#   GET  <app id>/config/configreferences/appsettings            -> value[].properties.status
set -uo pipefail
cd "$(dirname "$0")/.."

: "${AZURE_RESOURCE_GROUP:?postprovision needs AZURE_RESOURCE_GROUP}"
: "${AZURE_FUNCTION_APP_NAME:?postprovision needs AZURE_FUNCTION_APP_NAME (Bicep output)}"
API_VERSION=2022-03-01
TIMEOUT="${KV_REFERENCE_TIMEOUT:-600}"
INTERVAL="${KV_REFERENCE_INTERVAL:-20}"

command -v az >/dev/null || { echo "postprovision: az CLI not found" >&2; exit 1; }
app_id="$(az functionapp show -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" --query id -o tsv)" \
  || { echo "postprovision: function app $AZURE_FUNCTION_APP_NAME not found in $AZURE_RESOURCE_GROUP" >&2; exit 1; }
answer="$(mktemp)"
trap 'rm -f "$answer"' EXIT

deadline=$(( $(date +%s) + TIMEOUT ))
while :; do
  az rest --method post --uri "${app_id}/config/configreferences/appsettings/refresh?api-version=${API_VERSION}" \
    -o none 2>/dev/null || echo "postprovision: the refresh request failed (reading the cached status)"
  if az rest --method get --uri "${app_id}/config/configreferences/appsettings?api-version=${API_VERSION}" \
    -o json > "$answer" 2>/dev/null && report="$(python3 tools/preflight.py kv-references --references "$answer")"; then
    echo "$report" | sed 's/^/postprovision: /'
    exit 0
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "${report:-error: the Key Vault reference status could not be read}" | sed 's/^/postprovision: /' >&2
    echo "postprovision: Key Vault references of $AZURE_FUNCTION_APP_NAME are not resolved after ${TIMEOUT}s;" \
      "no code was deployed. Fix the cause above, then run 'bash scripts/postprovision.sh' and 'azd deploy'." >&2
    exit 1
  fi
  echo "postprovision: Key Vault references not resolved yet; again in ${INTERVAL}s"
  sleep "$INTERVAL"
done
