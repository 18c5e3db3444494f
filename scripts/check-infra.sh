#!/usr/bin/env bash
# Infrastructure gate: the Bicep in bicep/ must parse with checkov's parser, pass checkov's Bicep checks with
# no failures and no parsing errors (every skip justified inline), and pass the structural tests in
# tests/infra/. Self-contained: creates/reuses .venv-infra (separate from the app's .venv) from
# requirements-infra.txt. Exit code 0 only if every step passed. Called by `make test-infra` and CI.
set -uo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-infra
PY="$VENV/bin/python"
REQ=requirements-infra.txt
STAMP="$VENV/.installed"
PYTHON="${PYTHON:-python3}"
START=$(date +%s)

step() { printf '\n== %s\n' "$*"; }

# 1. Tools ----------------------------------------------------------------------------------------------------
step "tools (.venv-infra from $REQ)"
want="$(sha256sum "$REQ" | cut -d' ' -f1) $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "up to date"
else
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" || { echo "FAILED: could not create $VENV"; exit 1; }
  "$PY" -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  if ! "$PY" -m pip install --quiet --disable-pip-version-check -r "$REQ" 2> "$VENV/pip-errors.log"; then
    grep -v '^WARNING: Location' "$VENV/pip-errors.log"
    echo "FAILED: pip install -r $REQ"
    exit 1
  fi
  echo "$want" > "$STAMP"
  echo "installed: $("$PY" -m pip freeze | grep -iE '^(checkov|pycep-parser|pytest)==' | tr '\n' ' ')"
fi

parse_rc=0 checkov_rc=0 tests_rc=0

# 2. Parse every .bicep file with checkov's own parser (pycep-parser, the pinned version) -----------------------
step "parse (pycep-parser)"
"$PY" tests/infra/gate.py parse || parse_rc=1

# 3. checkov over bicep/ (each file is scanned as its own file; module contents are not followed) ---------------
step "checkov --framework bicep"
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
# --skip-download: no call to the vendor API for guidelines (offline CI). checkov's own exit code is not trusted
# (it is 0 when a file fails to parse); the gate reads the JSON report instead.
"$VENV/bin/checkov" --directory bicep --framework bicep --output json --skip-download > "$report" 2> "$report.err"
ck_exit=$?
if [ ! -s "$report" ] || [ "$ck_exit" -gt 1 ]; then
  echo "checkov did not produce a report (exit $ck_exit):"; tail -20 "$report.err"; checkov_rc=1
else
  "$PY" tests/infra/gate.py checkov "$report" || checkov_rc=1
fi
rm -f "$report.err"

# 4. Structural tests (own rootdir: the app's tests/conftest.py and pytest.ini are not loaded) -------------------
step "structural tests (pytest tests/infra)"
"$PY" -m pytest -c tests/infra/pytest.ini --confcutdir=tests/infra tests/infra -q || tests_rc=1

# Summary -----------------------------------------------------------------------------------------------------
status() { [ "$1" -eq 0 ] && echo ok || echo FAILED; }
step "infra gate summary ($(( $(date +%s) - START ))s)"
echo "  parse:   $(status $parse_rc)"
echo "  checkov: $(status $checkov_rc)"
echo "  tests:   $(status $tests_rc)"
if [ $((parse_rc + checkov_rc + tests_rc)) -ne 0 ]; then
  echo "infra gate: FAILED"
  exit 1
fi
echo "infra gate: ok"
