#!/usr/bin/env bash
# Require app role assignment on the gateway API's service principal (enterprise application), so Entra ID issues
# tokens for the gateway only to users, groups and client applications that were assigned to it.
#
#   scripts/entra-require-assignment.sh <gateway-api-client-id>            # show, then set appRoleAssignmentRequired
#   scripts/entra-require-assignment.sh <gateway-api-client-id> --check    # only report the current state (exit 1 if off)
#
# Needs: az CLI signed in as someone who may update the service principal (e.g. Cloud Application Administrator
# or an owner of the enterprise application). Assign users/groups (Enterprise applications -> Users and groups)
# and grant client applications their app roles (application permissions) BEFORE turning this on, or existing
# callers lose access (sign-in error AADSTS50105 for users, AADSTS501051 for apps). See docs/deploy.md.
set -euo pipefail

API_ID="${1:-${GATEWAY_AUTH_CLIENT_ID:-}}"
MODE="${2:-set}"
[ -n "$API_ID" ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
command -v az >/dev/null || { echo "az CLI not found" >&2; exit 1; }

SP_ID="$(az ad sp show --id "$API_ID" --query id -o tsv 2>/dev/null)" \
  || { echo "no service principal for app $API_ID: run 'az ad sp create --id $API_ID' (docs/deploy.md, step 1)" >&2; exit 1; }
current="$(az ad sp show --id "$API_ID" --query appRoleAssignmentRequired -o tsv)"
echo "service principal $SP_ID (app $API_ID): appRoleAssignmentRequired=$current"

echo "current assignments (principal type, name, app role id):"
az rest --method GET --url "https://graph.microsoft.com/v1.0/servicePrincipals/$SP_ID/appRoleAssignedTo" \
  --query "value[].[principalType, principalDisplayName, appRoleId]" -o tsv | sed 's/^/  /' || true

if [ "$MODE" = "--check" ]; then
  [ "$current" = "true" ] && exit 0
  echo "appRoleAssignmentRequired is off: any principal in the tenant can get a token for the gateway" >&2
  exit 1
fi

if [ "$current" != "true" ]; then
  az ad sp update --id "$API_ID" --set appRoleAssignmentRequired=true -o none
  echo "appRoleAssignmentRequired set to true"
fi
