#!/usr/bin/env bash
# Preflight checks before provisioning bicep/main.bicep: fail early, with a message that says what to change,
# instead of half-way through a deployment. Reads the same environment variables (and defaults) as
# bicep/main.bicepparam. Run by azd (azure.yaml hooks.preprovision) and by scripts/deploy.sh.
#
#   scripts/preflight.sh [--location <region>] [--skip-azure]
#
#   --location    region of the deployment (default: AZURE_LOCATION); Azure OpenAI uses AZURE_OPENAI_LOCATION if set
#   --skip-azure  only the parameter checks (no az calls)
#
# Checks: the gateway app registration id; switches and their required values (jumpbox SSH key, APIM publisher
# e-mail, encryption at host registered); zone redundancy vs. storage SKU; every model deployment (name, version,
# SKU) offered in the Azure OpenAI region by `az cognitiveservices model list`, not deprecated, with the SKU;
# the backend pool (AZURE_OPENAI_ACCOUNTS): labels, priorities, weights, every account serving every deployment.
set -uo pipefail

LOCATION="${AZURE_LOCATION:-}"
SKIP_AZURE=0
while [ $# -gt 0 ]; do
  case "$1" in
    -l|--location) [ -n "${2:-}" ] && LOCATION="$2"; shift 2 ;;
    --skip-azure) SKIP_AZURE=1; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "preflight: unknown option $1" >&2; exit 2 ;;
  esac
done

errors=0
fail() { echo "preflight: ERROR: $*" >&2; errors=$((errors + 1)); }
note() { echo "preflight: $*"; }
is_true() { [ "$(echo "${1:-false}" | tr '[:upper:]' '[:lower:]')" = "true" ]; }

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
case "${KEY_VAULT_CREATE_MODE:-default}" in
  default|recover) ;;
  *) fail "KEY_VAULT_CREATE_MODE must be default or recover" ;;
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

models_json="$(mktemp)"
trap 'rm -f "$models_json" "$models_json".*' EXIT
if ! az cognitiveservices model list --location "$OPENAI_LOCATION" -o json > "$models_json" 2>/dev/null; then
  fail "az cognitiveservices model list --location $OPENAI_LOCATION failed (region name? Microsoft.CognitiveServices registered?)"
else
  check_model() {  # deployment model version sku
    python3 - "${MODELS_FILE:-$models_json}" "$@" <<'PY'
import json, sys
path, deployment, name, version, sku = sys.argv[1:6]
entries = [e.get("model", {}) for e in json.load(open(path, encoding="utf-8"))
           if e.get("kind") in ("OpenAI", "AIServices")]
same = [m for m in entries if m.get("name") == name]
if not same:
    print(f"model {name} is not offered in this region"); sys.exit(1)
exact = [m for m in same if m.get("version") == version]
if not exact:
    versions = sorted({m.get("version", "?") for m in same})
    print(f"{name} version {version} is not offered in this region (offered: {', '.join(versions)})"); sys.exit(1)
model = exact[0]
status = str(model.get("lifecycleStatus", ""))
if status.lower() in ("deprecated", "deprecating", "retired", "legacy"):
    print(f"{name} {version} has lifecycle status {status} (closed to new customers?); pick a current version"); sys.exit(1)
skus = sorted({s.get("name", "?") for s in model.get("skus", [])})
if sku not in skus:
    print(f"{name} {version} has no {sku} deployment type here (offered: {', '.join(skus) or 'none'})"); sys.exit(1)
print(f"{deployment}: {name} {version} {sku} offered ({status or 'status n/a'})")
PY
  }
  if out="$(check_model "$CHAT_DEPLOYMENT" "$CHAT_MODEL" "$CHAT_MODEL_VERSION" "$CHAT_SKU")"; then note "$out"; else
    fail "chat model in $OPENAI_LOCATION: $out. Set AZURE_OPENAI_CHAT_MODEL / _VERSION / _SKU (azd env set ...) or AZURE_OPENAI_LOCATION"; fi
  if out="$(check_model "$EMBEDDING_DEPLOYMENT" "$EMBEDDING_MODEL" "$EMBEDDING_MODEL_VERSION" "$EMBEDDING_SKU")"; then note "$out"; else
    fail "embeddings model in $OPENAI_LOCATION: $out. Set AZURE_OPENAI_EMBEDDING_MODEL / _VERSION / _SKU or AZURE_OPENAI_LOCATION"; fi
  # Backend pool: each account's deployments (its own, or the defaults above) in the account's own region.
  if [ -n "${AZURE_OPENAI_ACCOUNTS:-}" ] && [ "$pool_ok" -eq 1 ]; then
    pool_lines="$(python3 - "$AZURE_OPENAI_ACCOUNTS" "$OPENAI_LOCATION" \
      "$CHAT_DEPLOYMENT|$CHAT_MODEL|$CHAT_MODEL_VERSION|$CHAT_SKU" \
      "$EMBEDDING_DEPLOYMENT|$EMBEDDING_MODEL|$EMBEDDING_MODEL_VERSION|$EMBEDDING_SKU" <<'PY'
import json, sys
accounts, default_region, *defaults = sys.argv[1:]
for account in json.loads(accounts):
    region = account.get("location") or default_region
    own = account.get("deployments") or []
    rows = ["|".join([d["name"], d["model"]["name"], d["model"]["version"], d["sku"]["name"]]) for d in own] or defaults
    for row in rows:
        print("|".join([account["label"], region, row]))
PY
)" || { fail "AZURE_OPENAI_ACCOUNTS: every deployment needs name, model.name, model.version and sku.name"; pool_lines=""; }
    while IFS='|' read -r label region deployment model version sku; do
      [ -n "$label" ] || continue
      region_models="$models_json.$region"
      if [ ! -s "$region_models" ] && ! az cognitiveservices model list --location "$region" -o json > "$region_models" 2>/dev/null; then
        fail "pool account $label: az cognitiveservices model list --location $region failed"; rm -f "$region_models"; continue
      fi
      if out="$(MODELS_FILE="$region_models" check_model "$deployment" "$model" "$version" "$sku")"; then
        note "pool account $label ($region): $out"
      else
        fail "pool account $label in $region: $out. Change the account's deployments or location in AZURE_OPENAI_ACCOUNTS"
      fi
    done <<< "$pool_lines"
    rm -f "$models_json".*
  fi
fi

if [ "$errors" -ne 0 ]; then
  echo "preflight: $errors problem(s); nothing was deployed" >&2
  exit 1
fi
note "ok"
