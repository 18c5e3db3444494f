# The two commands a newcomer needs:  make run   (gateway on :7071)   and   make test
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: help install run test test-app test-infra bench bench-concurrency bench-rollup browser clean

help:
	@echo "make run    - Azurite + local Azure OpenAI simulator + the gateway on http://localhost:7071/api"
	@echo "make test   - the whole test suite (app tests against Azurite, then the Bicep gate)"
	@echo "make bench  - gateway overhead benchmark (direct-to-simulator baseline vs through the gateway)"
	@echo "make bench-concurrency - streams held open at once (100-2,000) against a model-like upstream, with peers"
	@echo "make install - only install Python and npm dependencies"
	@echo "make browser - install Debian's chromium for the dashboard browser test (optional, needs root)"

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: install
	bash scripts/run-local.sh

test: test-app test-infra

test-app: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest

test-infra:
	bash scripts/check-infra.sh

bench: install
	$(PY) scripts/bench.py

bench-concurrency: install
	$(PY) scripts/bench.py concurrency --json docs/performance-concurrency.json

bench-rollup: install
	$(PY) scripts/bench.py rollup

browser:
	apt-get update && apt-get install -y chromium

clean:
	rm -rf $(VENV) .venv-infra node_modules .pytest_cache .azurite
