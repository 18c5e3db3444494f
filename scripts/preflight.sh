#!/usr/bin/env bash
# Preflight checks before provisioning bicep/main.bicep: fail early, with a message that says what to change,
# instead of half-way through a deployment. Reads the same environment variables (and defaults) as
# bicep/main.bicepparam. Run by azd (azure.yaml hooks) and by scripts/deploy.sh. The checks that read Azure's
# answers are in tools/preflight.py (unit-tested with recorded az outputs).
#
#   scripts/preflight.sh [--location <region>] [--skip-azure]
#   scripts/preflight.sh --deploy-path
#
#   --location     region of the deployment (default: AZURE_LOCATION); Azure OpenAI uses AZURE_OPENAI_LOCATION if set
#   --skip-azure   only the parameter checks (no az calls)
#   --deploy-path  only: can this machine reach the app's deployment (SCM) endpoint? (before the code upload;
#                  needs AZURE_RESOURCE_GROUP and AZURE_FUNCTION_APP_NAME, which azd and deploy.sh set)
#
# Checks: the gateway app registration id; switches and their required values (jumpbox SSH key, APIM publisher
# e-mail, encryption at host registered); zone redundancy vs. storage SKU; the deploy path (public inbound needs
# SCM_ALLOWED_IP_RANGES, or SCM_ALLOW_DEPLOYER_IP=true to add this machine's address); every model deployment
# (name, version, SKU) offered in its region by `az cognitiveservices model list`, not closed, its deprecation dates
# (warning within 6 months, error when passed), its capacity against the free quota (`az cognitiveservices usage
# list`); the backend pool (AZURE_OPENAI_ACCOUNTS); soft-deleted Key Vaults / Azure OpenAI accounts in the way
# (`az keyvault list-deleted`, `az cognitiveservices account list-deleted`), with the commands that clear them.
set -uo pipefail

LOCATION="${AZURE_LOCATION:-}"
SKIP_AZURE=0
DEPLOY_PATH=0
TOOLS="$(cd "$(dirname "$0")/.." && pwd)/tools/preflight.py"
while [ $# -gt 0 ]; do
  case "$1" in
    -l|--location) [ -n "${2:-}" ] && LOCATION="$2"; shift 2 ;;
    --skip-azure) SKIP_AZURE=1; shift ;;
    --deploy-path) DEPLOY_PATH=1; shift ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "preflight: unknown option $1" >&2; exit 2 ;;
  esac
done

errors=0
fail() { echo "preflight: ERROR: $*" >&2; errors=$((errors + 1)); }
note() { echo "preflight: $*"; }
is_true() { [ "$(echo "${1:-false}" | tr '[:upper:]' '[:lower:]')" = "true" ]; }
# tools/preflight.py prints "ok: ...", "warning: ...", "error: ..." lines: report them the preflight way.
emit() {
  local line
  while IFS= read -r line; do
    case "$line" in
      error:\ *) fail "${line#error: }" ;;
      warning:\ *) note "WARNING: ${line#warning: }" ;;
      ok:\ *) note "${line#ok: }" ;;
      "") ;;
      *) note "$line" ;;
    esac
  done
}

# Deploy path only (azd predeploy hook, deploy.sh before the upload) ---------------------------------------------
if [ "$DEPLOY_PATH" -eq 1 ]; then
  : "${AZURE_RESOURCE_GROUP:?preflight --deploy-path needs AZURE_RESOURCE_GROUP}"
  : "${AZURE_FUNCTION_APP_NAME:?preflight --deploy-path needs AZURE_FUNCTION_APP_NAME (a provisioned app)}"
  command -v az >/dev/null || { fail "az CLI not found"; exit 1; }
  scm_host="$(az functionapp show -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" \
    --query "hostNameSslStates[?hostType=='Repository'].name | [0]" -o tsv 2>/dev/null)"
  access="$(az functionapp show -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" \
    --query publicNetworkAccess -o tsv 2>/dev/null)"
  [ -n "$scm_host" ] || { fail "could not read the deployment (SCM) host of $AZURE_FUNCTION_APP_NAME"; exit 1; }
  private=false; [ "$access" = "Disabled" ] && private=true
  deployer=""
  if [ "$private" = false ] && is_true "${SCM_ALLOW_DEPLOYER_IP:-false}"; then
    deployer="$(python3 "$TOOLS" deployer-ip)" && deployer="${deployer%/32}" || deployer=""
  fi
  emit < <(python3 "$TOOLS" deploy-path --host "$scm_host" --private-inbound "$private" \
    --ranges "${SCM_ALLOWED_IP_RANGES:-}" --deployer-ip "$deployer")
  if [ "$errors" -ne 0 ]; then echo "preflight: the code deployment can't reach $scm_host from here; nothing was deployed" >&2; exit 1; fi
  exit 0
fi

# Model deployments: the same variables and defaults as bicep/main.bicepparam (tests/infra checks they agree).
CHAT_DEPLOYMENT="${AZURE_OPENAI_CHAT_DEPLOYMENT:-gpt-5.4-mini}"
CHAT_MODEL="${AZURE_OPENAI_CHAT_MODEL:-gpt-5.4-mini}"
CHAT_MODEL_VERSION="${AZURE_OPENAI_CHAT_MODEL_VERSION:-2026-03-17}"
CHAT_SKU="${AZURE_OPENAI_CHAT_SKU:-GlobalStandard}"
CHAT_CAPACITY="${AZURE_OPENAI_CHAT_CAPACITY:-50}"
EMBEDDING_DEPLOYMENT="${AZURE_OPENAI_EMBEDDING_DEPLOYMENT:-text-embedding-3-small}"
EMBEDDING_MODEL="${AZURE_OPENAI_EMBEDDING_MODEL:-text-embedding-3-small}"
EMBEDDING_MODEL_VERSION="${AZURE_OPENAI_EMBEDDING_MODEL_VERSION:-1}"
EMBEDDING_SKU="${AZURE_OPENAI_EMBEDDING_SKU:-GlobalStandard}"
EMBEDDING_CAPACITY="${AZURE_OPENAI_EMBEDDING_CAPACITY:-50}"
OPENAI_LOCATION="${AZURE_OPENAI_LOCATION:-$LOCATION}"

# 1. Parameters -------------------------------------------------------------------------------------------------
guid_re='^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
[[ "${GATEWAY_AUTH_CLIENT_ID:-}" =~ $guid_re ]] \
  || fail "GATEWAY_AUTH_CLIENT_ID must be the client id (GUID) of the gateway API app registration (docs/deploy.md, step 1)"
[ -n "${AZURE_ENV_NAME:-}" ] || fail "AZURE_ENV_NAME is not set (part of every resource name)"

if is_true "${ENABLE_JUMPBOX:-false}"; then
  key="${JUMPBOX_SSH_PUBLIC_KEY:-}"
  case "$key" in
    ssh-rsa\ *|ssh-ed25519\ *|ecdsa-sha2-*) ;;
    "") fail "ENABLE_JUMPBOX=true needs JUMPBOX_SSH_PUBLIC_KEY (e.g. azd env set JUMPBOX_SSH_PUBLIC_KEY \"\$(cat ~/.ssh/id_ed25519.pub)\")" ;;
    *) fail "JUMPBOX_SSH_PUBLIC_KEY does not look like an OpenSSH public key (ssh-ed25519 / ssh-rsa / ecdsa-sha2-*)" ;;
  esac
fi
if is_true "${ENABLE_APIM:-false}"; then
  [[ "${APIM_PUBLISHER_EMAIL:-}" == *@*.* ]] \
    || fail "ENABLE_APIM=true needs APIM_PUBLISHER_EMAIL (an e-mail address; API Management requires a publisher e-mail)"
fi
if is_true "${ZONE_REDUNDANT:-false}"; then
  case "${STORAGE_SKU:-Standard_LRS}" in
    Standard_ZRS|Standard_GZRS) ;;
    *) note "ZONE_REDUNDANT=true: storage will be deployed as ZRS/GZRS instead of ${STORAGE_SKU:-Standard_LRS}, and the plan with at least 3 instances" ;;
  esac
fi
case "${CONTENT_SHARE_MODE:-keyVaultReferenceAfterCreation}" in
  keyVaultReferenceAfterCreation|connectionStringAtCreation) ;;
  *) fail "CONTENT_SHARE_MODE must be keyVaultReferenceAfterCreation or connectionStringAtCreation" ;;
esac
case "${PLAN_SKU:-EP1}" in
  EP1|EP2|EP3) ;;
  *) fail "PLAN_SKU must be EP1, EP2 or EP3 (Elastic Premium; a P* SKU is a Dedicated plan that does not scale by events; docs/tuning.md)" ;;
esac
[[ "${WORKER_PROCESS_COUNT:-0}" =~ ^([0-9]|10)$ ]] \
  || fail "WORKER_PROCESS_COUNT must be 0 (one per vCPU of PLAN_SKU) to 10 (the host's maximum; docs/tuning.md)"
[[ "${PREWARMED_INSTANCE_COUNT:-1}" =~ ^([1-9]|10)$ ]] \
  || fail "PREWARMED_INSTANCE_COUNT must be 1 to 10 (1 is the platform's default and advice; docs/tuning.md)"
for capacity in "$CHAT_CAPACITY" "$EMBEDDING_CAPACITY"; do
  [[ "$capacity" =~ ^[1-9][0-9]*$ ]] || fail "model capacity '$capacity' is not a positive whole number"
done

# Deploy path: the SCM site must admit the machine that deploys the code (or the deployment runs in the VNet).
scm_out="$(python3 "$TOOLS" scm --private-inbound "${ENABLE_PRIVATE_INBOUND:-false}" \
  --ranges "${SCM_ALLOWED_IP_RANGES:-}" --consent "${SCM_ALLOW_DEPLOYER_IP:-false}")"
if [[ "$scm_out" == add-deployer-ip:* ]]; then
  if range="$(python3 "$TOOLS" deployer-ip)"; then
    export SCM_ALLOWED_IP_RANGES="$range"
    if command -v azd >/dev/null 2>&1 && azd env get-values >/dev/null 2>&1; then
      azd env set SCM_ALLOWED_IP_RANGES "$range" >/dev/null && note "SCM_ALLOW_DEPLOYER_IP=true: SCM_ALLOWED_IP_RANGES=$range set in the azd environment"
    else
      note "SCM_ALLOW_DEPLOYER_IP=true: SCM_ALLOWED_IP_RANGES=$range (this machine's public address)"
    fi
  else
    fail "SCM_ALLOW_DEPLOYER_IP=true but this machine's public address could not be read; set SCM_ALLOWED_IP_RANGES"
  fi
else
  emit <<< "$scm_out"
fi

pool_ok=0
# Backend pool: AZURE_OPENAI_ACCOUNTS is main.bicep's openAiAccounts as JSON (docs/backend-pools.md). The gateway
# refuses a malformed GATEWAY_BACKENDS at start-up; this catches it before anything is deployed.
if [ -n "${AZURE_OPENAI_ACCOUNTS:-}" ]; then
  if ! out="$(python3 - "$AZURE_OPENAI_ACCOUNTS" "$CHAT_DEPLOYMENT" "$EMBEDDING_DEPLOYMENT" <<'PY'
import json, re, sys
text, *required = sys.argv[1:]
label_re = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
fields = {"label", "location", "priority", "weight", "deployments"}
try:
    accounts = json.loads(text)
except ValueError as exc:
    print(f"is not valid JSON ({exc})"); sys.exit(1)
if not isinstance(accounts, list) or len(accounts) > 16:
    print("must be a JSON array of at most 16 accounts"); sys.exit(1)
problems, seen = [], set()
for i, account in enumerate(accounts):
    where = f"[{i}]"
    if not isinstance(account, dict):
        problems.append(f"{where} is not an object"); continue
    unknown = sorted(set(account) - fields)
    if unknown:
        problems.append(f"{where} has an unknown field {unknown[0]!r} (allowed: {', '.join(sorted(fields))})")
    label = account.get("label")
    if not isinstance(label, str) or not label_re.fullmatch(label):
        problems.append(f"{where}.label must be 1-32 letters, digits, '.', '_' or '-', starting with a letter or digit")
    elif label.lower() in seen:
        problems.append(f"{where}.label {label!r} is used twice (labels are unique, compared without case)")
    else:
        seen.add(label.lower())
    for name, top in (("priority", 100), ("weight", 1000)):
        value = account.get(name, 1)
        if type(value) is not int or not 1 <= value <= top:
            problems.append(f"{where}.{name} must be a whole number from 1 to {top}")
    if "location" in account and not (isinstance(account["location"], str) and account["location"]):
        problems.append(f"{where}.location must be a region name")
    if account.get("deployments", []) != []:  # absent or []: openAiDeployments
        deployments = account["deployments"]
        names = {d.get("name") for d in deployments if isinstance(d, dict)} if isinstance(deployments, list) else set()
        missing = [name for name in required if name not in names]
        if missing:
            problems.append(f"{where}.deployments lacks {', '.join(missing)} (every account serves every deployment)")
if problems:
    print("; ".join(problems)); sys.exit(1)
print(f"backend pool of {len(accounts)} account(s): {', '.join(a['label'] for a in accounts)}")
PY
  )"; then
    fail "AZURE_OPENAI_ACCOUNTS $out"
  else
    note "$out"
    pool_ok=1
  fi
fi

if [ "$SKIP_AZURE" -eq 1 ]; then
  if [ "$errors" -ne 0 ]; then echo "preflight: $errors problem(s); nothing was deployed" >&2; exit 1; fi
  note "parameter checks ok (Azure checks skipped)"
  exit 0
fi

# 2. Azure ------------------------------------------------------------------------------------------------------
command -v az >/dev/null || { fail "az CLI not found (needed for the model availability check)"; exit 1; }
az account show --query id -o tsv >/dev/null 2>&1 || { fail "not logged in: run 'az login'"; exit 1; }
[ -n "$OPENAI_LOCATION" ] || { fail "no region: set AZURE_LOCATION (or AZURE_OPENAI_LOCATION), or pass --location"; exit 1; }

if is_true "${ENABLE_JUMPBOX:-false}" && is_true "${JUMPBOX_ENCRYPTION_AT_HOST:-false}"; then
  state="$(az feature show --namespace Microsoft.Compute --name EncryptionAtHost --query properties.state -o tsv 2>/dev/null)"
  [ "$state" = "Registered" ] || fail "JUMPBOX_ENCRYPTION_AT_HOST=true but the subscription feature Microsoft.Compute/EncryptionAtHost is '${state:-not registered}': run 'az feature register --namespace Microsoft.Compute --name EncryptionAtHost' (then 'az provider register -n Microsoft.Compute'), or set JUMPBOX_ENCRYPTION_AT_HOST=false"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Models: one row per deployment of every account (label|region|name|model|version|sku|capacity); with a backend
# pool the pool's accounts replace the single one.
if [ -n "${AZURE_OPENAI_ACCOUNTS:-}" ] && [ "$pool_ok" -eq 1 ]; then
  python3 - "$AZURE_OPENAI_ACCOUNTS" "$OPENAI_LOCATION" \
    "$CHAT_DEPLOYMENT|$CHAT_MODEL|$CHAT_MODEL_VERSION|$CHAT_SKU|$CHAT_CAPACITY" \
    "$EMBEDDING_DEPLOYMENT|$EMBEDDING_MODEL|$EMBEDDING_MODEL_VERSION|$EMBEDDING_SKU|$EMBEDDING_CAPACITY" \
    > "$work/rows" 2>/dev/null <<'PY' || fail "AZURE_OPENAI_ACCOUNTS: every deployment needs name, model.name, model.version, sku.name and sku.capacity"
import json, sys
accounts, default_region, *defaults = sys.argv[1:]
for account in json.loads(accounts):
    region = account.get("location") or default_region
    own = account.get("deployments") or []
    rows = ["|".join([d["name"], d["model"]["name"], d["model"]["version"], d["sku"]["name"], str(int(d["sku"]["capacity"]))])
            for d in own] or defaults
    for row in rows:
        print("|".join([account["label"], region, row]))
PY
elif [ -z "${AZURE_OPENAI_ACCOUNTS:-}" ]; then
  printf '%s\n' "default|$OPENAI_LOCATION|$CHAT_DEPLOYMENT|$CHAT_MODEL|$CHAT_MODEL_VERSION|$CHAT_SKU|$CHAT_CAPACITY" \
    "default|$OPENAI_LOCATION|$EMBEDDING_DEPLOYMENT|$EMBEDDING_MODEL|$EMBEDDING_MODEL_VERSION|$EMBEDDING_SKU|$EMBEDDING_CAPACITY" \
    > "$work/rows"
fi
# Accounts already in the target resource group (a redeployment): their capacity is ours to replace.
existing=""
if [ -n "${AZURE_RESOURCE_GROUP:-}" ] && [ "$(az group exists -n "$AZURE_RESOURCE_GROUP" 2>/dev/null)" = "true" ]; then
  existing="$(az cognitiveservices account list -g "$AZURE_RESOURCE_GROUP" --query "[].[name, location]" -o tsv 2>/dev/null)"
fi
if [ -s "$work/rows" ]; then
  for region in $(cut -d'|' -f2 "$work/rows" | sort -u); do
    if ! az cognitiveservices model list --location "$region" -o json > "$work/models.$region.json" 2>/dev/null; then
      fail "az cognitiveservices model list --location $region failed (region name? Microsoft.CognitiveServices registered?)"
      continue
    fi
    az cognitiveservices usage list --location "$region" -o json > "$work/usages.$region.json" 2>/dev/null \
      || note "WARNING: az cognitiveservices usage list --location $region failed: quota not checked"
    echo "[]" > "$work/deployed.$region.json"
    while IFS=$'\t' read -r account account_region; do
      [ -n "$account" ] && [ "$(echo "$account_region" | tr -d ' ' | tr '[:upper:]' '[:lower:]')" = "$region" ] || continue
      az cognitiveservices account deployment list -g "$AZURE_RESOURCE_GROUP" -n "$account" -o json \
        > "$work/one.json" 2>/dev/null || continue
      python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); json.dump(a+b, open(sys.argv[1],"w"))' \
        "$work/deployed.$region.json" "$work/one.json" 2>/dev/null || true
    done <<< "$existing"
  done
  emit < <(python3 "$TOOLS" models --models-dir "$work" < "$work/rows")
fi

# Soft-deleted resources with the names this deployment uses (after azd down): recover or purge, never by a switch.
if az keyvault list-deleted -o json > "$work/vaults.json" 2>/dev/null \
  && az cognitiveservices account list-deleted -o json > "$work/accounts.json" 2>/dev/null; then
  emit < <(python3 "$TOOLS" soft-deleted --vaults "$work/vaults.json" --accounts "$work/accounts.json" \
    --resource-group "${AZURE_RESOURCE_GROUP:-}" --env-name "${AZURE_ENV_NAME:-}" \
    --vault-name "${AZURE_KEY_VAULT_NAME:-}" --account-name "${AZURE_OPENAI_NAME:-}")
else
  note "WARNING: could not list soft-deleted Key Vaults / Azure OpenAI accounts (az keyvault list-deleted, az cognitiveservices account list-deleted)"
fi

if [ "$errors" -ne 0 ]; then
  echo "preflight: $errors problem(s); nothing was deployed" >&2
  exit 1
fi
note "ok"
