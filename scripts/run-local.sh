#!/usr/bin/env bash
# Run the gateway locally: Azurite (storage emulator) + the embedded Azure OpenAI simulator + the gateway on :7071.
# Uses local.settings.json (created from local.settings.json.example on first run), like `func start` does.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f local.settings.json ]; then
  cp local.settings.json.example local.settings.json
  echo "Created local.settings.json from local.settings.json.example (edit it to point at a real Azure OpenAI)."
fi

azurite_pid=""
if (exec 3<>/dev/tcp/127.0.0.1/10002) 2>/dev/null; then
  echo "Azurite (or another Table service) already listens on 127.0.0.1:10002; using it."
else
  mkdir -p .azurite
  node_modules/.bin/azurite --silent --disableTelemetry --skipApiVersionCheck --location .azurite \
    --blobHost 127.0.0.1 --queueHost 127.0.0.1 --tableHost 127.0.0.1 > .azurite/azurite.log 2>&1 &
  azurite_pid=$!
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/10002) 2>/dev/null && break
    sleep 0.1
  done
  echo "Azurite started (blob :10000, queue :10001, table :10002; data in .azurite/)."
fi
trap '[ -n "$azurite_pid" ] && kill "$azurite_pid" 2>/dev/null || true' EXIT

cat <<'MSG'

Call it with the official openai SDK, for example:

  from openai import AzureOpenAI
  client = AzureOpenAI(azure_endpoint="http://localhost:7071/api", api_key="local", api_version="2024-10-21")
  print(client.chat.completions.create(model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Hello"}]).choices[0].message.content)

  or: curl -s localhost:7071/api/openai/v1/chat/completions -H 'content-type: application/json' \
        -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'

Local dev auth is on (GATEWAY_LOCAL_DEV_AUTH=true): calls without credentials act as a local developer.
Stop with Ctrl+C.

MSG
exec .venv/bin/python -m shared.local.devhost --port "${GATEWAY_PORT:-7071}"
