"""Azure-side tuning (docs/tuning.md): the plan size drives the worker processes per instance, prewarmed and
always-ready instances are set on the site, the host's HTTP throttles stay off, and the deployment switches that
carry these values agree between main.bicep, main.bicepparam and the preflight script.
"""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("pycep", reason="Bicep structural tests run in .venv-infra (scripts/check-infra.sh)")

from tests.infra.bicep_model import REPO_ROOT, Scope, modules, one_resource, template  # noqa: E402
from tests.infra.test_bicep_rules import (  # noqa: E402
    bicepparam_defaults,
    decorator,
    preflight_defaults,
    run_preflight,
)

# Cores per Elastic Premium size (learn.microsoft.com/azure/azure-functions/functions-premium-plan, "Available
# instance SKUs"): the worker process count follows them.
VCPUS = {"EP1": 1, "EP2": 2, "EP3": 4}
HOST_MAX_WORKER_PROCESSES = 10  # azure-functions-host WorkerProcessCountOptions.MaxProcessCount


def module() -> dict:
    return template("modules/functionapp.bicep")


def fixed_settings(overrides: dict) -> dict:
    return Scope(module(), overrides).resolve("fixedSettings")


def test_the_plan_size_is_an_elastic_premium_choice_defaulting_to_ep1():
    for tpl in (template("main.bicep"), module()):
        sku = tpl["parameters"]["planSku"]
        assert sku["default"] == "EP1"
        assert decorator(sku, "allowed")["argument"] == list(VCPUS)
    plan = one_resource(module(), "Microsoft.Web/serverfarms")
    assert plan["sku"]["name"] == "planSku"
    assert (plan["sku"]["tier"], plan["sku"]["family"], plan["kind"]) == ("ElasticPremium", "EP", "elastic")
    params = modules(template("main.bicep"))["functionApp"]["body"]["params"]
    for name in ("planSku", "workerProcessCount", "preWarmedInstanceCount", "minimumElasticInstanceCount"):
        assert params[name] == name, name


def test_one_worker_process_per_vcpu_unless_set():
    for sku, vcpus in VCPUS.items():
        assert fixed_settings({"planSku": sku})["FUNCTIONS_WORKER_PROCESS_COUNT"] == str(vcpus), sku
    assert fixed_settings({})["FUNCTIONS_WORKER_PROCESS_COUNT"] == "1"  # the default deployment: EP1
    override = fixed_settings({"planSku": "EP1", "workerProcessCount": 3})
    assert override["FUNCTIONS_WORKER_PROCESS_COUNT"] == "3"
    for tpl in (template("main.bicep"), module()):
        count = tpl["parameters"]["workerProcessCount"]
        assert count["default"] == 0  # 0 = derived from the plan size
        assert decorator(count, "min_value")["argument"] == 0
        assert decorator(count, "max_value")["argument"] == HOST_MAX_WORKER_PROCESSES
    # Every app setting reaches the site in both content-share modes (the deferred resource and the creation list).
    deferred = Scope(module(), {"planSku": "EP3"}).resolve("deferredSettings")
    assert deferred["FUNCTIONS_WORKER_PROCESS_COUNT"] == "4"


def test_prewarmed_and_always_ready_instances_are_set_on_the_site():
    site_config = one_resource(module(), "Microsoft.Web/sites")["properties"]["siteConfig"]
    assert site_config["preWarmedInstanceCount"] == "preWarmedInstanceCount"
    assert site_config["minimumElasticInstanceCount"] == "minimumInstances"  # always ready: unchanged
    for tpl in (template("main.bicep"), module()):
        prewarmed = tpl["parameters"]["preWarmedInstanceCount"]
        assert prewarmed["default"] == 1  # the platform's default and advice
        assert decorator(prewarmed, "min_value")["argument"] == 1
        assert tpl["parameters"]["minimumElasticInstanceCount"]["default"] == 1


def test_the_hosts_http_throttles_stay_off_and_no_dynamic_concurrency_is_claimed_for_http():
    host = json.loads((REPO_ROOT / "host.json").read_text(encoding="utf-8"))
    http = host["extensions"]["http"]
    # Unbounded: a stream holds its slot until its last byte, and the host answers a refusal with a bare 429.
    assert http["maxConcurrentRequests"] == -1
    assert http["maxOutstandingRequests"] == -1
    assert http["dynamicThrottlesEnabled"] is False  # reads Windows sandbox counters; nothing on Linux
    # Dynamic concurrency covers Blob, Queue and Service Bus triggers, not HTTP: nothing to switch on here.
    assert not host.get("concurrency", {}).get("dynamicConcurrencyEnabled", False)


def test_bicepparam_and_preflight_agree_on_the_tuning_defaults():
    bicepparam, preflight = bicepparam_defaults(), preflight_defaults()
    main = template("main.bicep")["parameters"]
    expected = {
        "PLAN_SKU": main["planSku"]["default"],
        "WORKER_PROCESS_COUNT": str(main["workerProcessCount"]["default"]),
        "PREWARMED_INSTANCE_COUNT": str(main["preWarmedInstanceCount"]["default"]),
    }
    for variable, value in expected.items():
        assert bicepparam[variable] == value, variable
        assert preflight[variable] == value, variable
    text = (REPO_ROOT / "bicep" / "main.bicepparam").read_text(encoding="utf-8")
    assert re.search(r"param planSku = readEnvironmentVariable\('PLAN_SKU'", text)
    assert re.search(r"param workerProcessCount = int\(readEnvironmentVariable\('WORKER_PROCESS_COUNT'", text)
    assert re.search(r"param preWarmedInstanceCount = int\(readEnvironmentVariable\('PREWARMED_INSTANCE_COUNT'", text)


def test_preflight_refuses_a_dedicated_sku_and_counts_out_of_range(tmp_path):
    result = run_preflight(tmp_path, [], PLAN_SKU="P1V3", WORKER_PROCESS_COUNT="11", PREWARMED_INSTANCE_COUNT="0")
    assert result.returncode == 1
    assert "PLAN_SKU must be EP1, EP2 or EP3" in result.stderr
    assert "WORKER_PROCESS_COUNT must be 0" in result.stderr
    assert "PREWARMED_INSTANCE_COUNT must be 1 to 10" in result.stderr
    accepted = run_preflight(tmp_path, [], PLAN_SKU="EP3", WORKER_PROCESS_COUNT="10", PREWARMED_INSTANCE_COUNT="2")
    assert "PLAN_SKU" not in accepted.stderr and "WORKER_PROCESS_COUNT" not in accepted.stderr
    assert "PREWARMED_INSTANCE_COUNT" not in accepted.stderr


def test_the_tuning_page_states_the_process_count_bicep_derives():
    text = (REPO_ROOT / "docs" / "tuning.md").read_text(encoding="utf-8")
    for sku, vcpus in VCPUS.items():
        row = re.search(rf"^\| {sku} \|([^\n]*)$", text, re.MULTILINE)
        assert row is not None, sku
        cells = [c.strip() for c in row.group(1).split("|")]
        assert cells[0] == str(vcpus) and cells[2] == str(vcpus), (sku, cells)
