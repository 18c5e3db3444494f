"""Preflight's checks that read Azure's answers (tools/preflight.py), fed with az outputs in the shape az prints
them (tests/deploy/fixtures): model dates, quota, soft-deleted names, the deploy path, Key Vault references."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from tools import preflight
from tools.preflight import Deployment

FIXTURES = Path(__file__).parent / "fixtures"
REGION = "swedencentral"


def load(name: str):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


CATALOG = {REGION: load("model-list.swedencentral.json")}
USAGES = {REGION: load("usage-list.swedencentral.json")}
CHAT = Deployment("default", REGION, "gpt-5.4-mini", "gpt-5.4-mini", "2026-03-17", "GlobalStandard", 50)
EMBEDDING = Deployment("default", REGION, "text-embedding-3-small", "text-embedding-3-small", "1", "GlobalStandard", 50)


def levels(findings) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in findings:
        out.setdefault(f.level, []).append(f.message)
    return out


def run(deployments, today: date, deployed=None, usages=None):
    return levels(preflight.check_models(deployments, CATALOG, usages or USAGES, deployed or {}, today))


# --- dates ---------------------------------------------------------------------------------------------------------


def test_a_model_far_from_its_deprecation_passes_quietly():
    found = run([CHAT, EMBEDDING], date(2026, 6, 1))
    assert "error" not in found and "warning" not in found, found
    assert any("gpt-5.4-mini: gpt-5.4-mini 2026-03-17 GlobalStandard offered" in m for m in found["ok"])


def test_a_model_within_six_months_of_its_deprecation_warns_with_the_date():
    found = run([CHAT, EMBEDDING], date(2026, 12, 7))
    assert "error" not in found
    (message,) = found["warning"]
    assert "gpt-5.4-mini 2026-03-17" in message and "2027-03-17" in message and "in 100 days" in message


def test_a_model_past_its_deprecation_fails():
    found = run([CHAT, EMBEDDING], date(2027, 3, 17))
    (message,) = found["error"]
    assert "2027-03-17, which has passed" in message and "pick a newer version" in message


def test_the_earliest_of_the_model_and_deployment_type_dates_counts():
    old = Deployment("default", REGION, "chat", "gpt-4o-mini", "2024-07-18", "GlobalStandard", 10)
    found = run([old], date(2026, 12, 7))
    assert any("gpt-4o-mini 2024-07-18" in m and "2026-10-01" in m for m in found["error"])


def test_availability_messages_name_what_to_change():
    missing = Deployment("default", REGION, "chat", "gpt-9", "1", "GlobalStandard", 10)
    wrong_version = Deployment("default", REGION, "chat", "gpt-5.4-mini", "2099-01-01", "GlobalStandard", 10)
    wrong_sku = Deployment("default", REGION, "emb", "text-embedding-3-small", "1", "ProvisionedManaged", 10)
    found = run([missing, wrong_version, wrong_sku], date(2026, 6, 1))
    joined = "\n".join(found["error"])
    assert "model gpt-9 is not offered in this region" in joined
    assert "version 2099-01-01 is not offered in this region (offered: 2026-03-17)" in joined
    assert "has no ProvisionedManaged deployment type here (offered: GlobalStandard, Standard)" in joined


# --- quota ---------------------------------------------------------------------------------------------------------


def test_capacity_beyond_the_free_quota_fails_with_the_numbers():
    big = Deployment("default", REGION, "gpt-5.4-mini", "gpt-5.4-mini", "2026-03-17", "GlobalStandard", 80)
    found = run([big, EMBEDDING], date(2026, 6, 1))
    (message,) = found["error"]
    assert "quota OpenAI.GlobalStandard.gpt-5.4-mini in swedencentral: 80 asked, 50 free" in message
    assert "limit 450, in use 400" in message
    assert any(
        "OpenAI.GlobalStandard.text-embedding-3-small in swedencentral: 50 asked, 1000 free" in m for m in found["ok"]
    )


def test_capacity_of_every_account_in_the_region_is_added_up():
    second = Deployment("b", REGION, "gpt-5.4-mini", "gpt-5.4-mini", "2026-03-17", "GlobalStandard", 30)
    first = Deployment("a", REGION, "gpt-5.4-mini", "gpt-5.4-mini", "2026-03-17", "GlobalStandard", 30)
    found = run([first, second], date(2026, 6, 1))
    assert any("60 asked, 50 free" in m for m in found["error"])


def test_a_redeployment_counts_its_own_deployed_capacity_as_free():
    big = Deployment("default", REGION, "gpt-5.4-mini", "gpt-5.4-mini", "2026-03-17", "GlobalStandard", 80)
    deployed = {REGION: preflight.deployed_with_usage_names(load("deployment-list.json"), CATALOG[REGION])}
    found = run([big], date(2026, 6, 1), deployed=deployed)
    assert "error" not in found, found
    assert any("80 asked, 100 free" in m for m in found["ok"])


def test_a_quota_the_region_does_not_report_is_a_warning_not_a_guess():
    found = run([CHAT], date(2026, 6, 1), usages={REGION: []})
    assert "error" not in found
    assert any("not reported" in m for m in found["warning"])


def test_deployment_rows_are_parsed_strictly():
    assert Deployment.parse("default|swedencentral|c|m|1|GlobalStandard|50\n").capacity == 50
    for bad in ("a|b|c|d|e|f", "a|b|c|d|e|f|5x", "a|b|c|d|e|f|-1", "a|b|c|d|e|f|٣"):
        with pytest.raises(ValueError):
            Deployment.parse(bad)


# --- soft-deleted --------------------------------------------------------------------------------------------------


def test_soft_deleted_vault_and_account_of_this_environment_fail_with_the_commands():
    found = levels(
        preflight.check_soft_deleted(
            load("keyvault-list-deleted.json"), load("cognitiveservices-list-deleted.json"), "rg-aigw-dev", "aigw-dev"
        )
    )
    vault, account = found["error"]
    assert "Key Vault kv-abc123 is soft-deleted" in vault
    assert "az keyvault recover --name kv-abc123" in vault
    assert "purge protection keeps it until 2027-03-01" in vault and "az keyvault purge" not in vault
    assert "RESOURCE_NAME_SALT" in vault
    assert (
        "az cognitiveservices account recover --location swedencentral --resource-group rg-aigw-dev --name oai-abc123"
        in account
    )
    assert (
        "az cognitiveservices account purge --location swedencentral --resource-group rg-aigw-dev --name oai-abc123"
        in account
    )
    assert not any("kv-other" in m for m in found["error"])


def test_a_name_the_environment_deployed_before_is_matched_even_from_another_group():
    found = levels(preflight.check_soft_deleted(load("keyvault-list-deleted.json"), [], "rg-new", "x", ["KV-OTHER"]))
    (message,) = found["error"]
    assert "kv-other" in message and "az keyvault purge --name kv-other --location westeurope" in message


def test_soft_deleted_resources_of_other_environments_are_left_alone():
    found = levels(
        preflight.check_soft_deleted(
            load("keyvault-list-deleted.json"), load("cognitiveservices-list-deleted.json"), "rg-aigw-dev", "aigw-prod"
        )
    )
    assert "error" not in found


# --- deploy path ---------------------------------------------------------------------------------------------------


def test_public_inbound_without_scm_ranges_fails_and_says_how_to_open_it():
    found = levels(preflight.check_scm(private_inbound=False, ranges="", consent=False))
    (message,) = found["error"]
    assert "403" in message and "SCM_ALLOWED_IP_RANGES" in message and "SCM_ALLOW_DEPLOYER_IP=true" in message


def test_consent_asks_for_the_deployer_address_and_ranges_are_validated():
    assert [f.level for f in preflight.check_scm(False, "", consent=True)] == ["add-deployer-ip"]
    assert "ok" in levels(preflight.check_scm(False, "203.0.113.7/32", False))
    assert "error" in levels(preflight.check_scm(False, "203.0.113.7", False))  # no prefix length
    assert "error" in levels(preflight.check_scm(False, "203.0.113.7/24", False))  # host bits set
    assert "error" in levels(preflight.check_scm(False, "0.0.0.0/0", False))
    assert "ok" in levels(preflight.check_scm(True, "", False))


def test_private_inbound_deploys_only_from_where_the_scm_host_resolves_privately():
    host = "func-abc123.scm.azurewebsites.net"
    inside = levels(preflight.check_deploy_path(host, ["10.20.1.5"], True, ""))
    assert "ok" in inside and "error" not in inside
    outside = levels(preflight.check_deploy_path(host, ["20.105.232.40"], True, ""))
    assert "outside the VNet" in outside["error"][0] and "jumpbox" in outside["error"][0]


def test_public_inbound_deploy_path_needs_the_deployer_in_the_ranges():
    host = "func-abc123.scm.azurewebsites.net"
    assert "error" in levels(preflight.check_deploy_path(host, ["20.105.232.40"], False, ""))
    assert "ok" in levels(preflight.check_deploy_path(host, ["20.105.232.40"], False, "203.0.113.0/24", "203.0.113.9"))
    found = levels(preflight.check_deploy_path(host, ["20.105.232.40"], False, "203.0.113.0/24", "198.51.100.1"))
    assert "198.51.100.1 is not in SCM_ALLOWED_IP_RANGES" in found["error"][0]
    assert "error" in levels(preflight.check_deploy_path(host, [], False, "203.0.113.0/24"))


def test_the_deployer_address_must_be_an_ipv4_address():
    assert preflight.deployer_ip(lambda url: "203.0.113.9\n") == "203.0.113.9"
    for answer in ("<html>", "2001:db8::1"):
        with pytest.raises(ValueError):
            preflight.deployer_ip(lambda url, a=answer: a)


# --- Key Vault references ------------------------------------------------------------------------------------------


def test_an_unresolved_key_vault_reference_stops_with_its_status_and_cause():
    found = levels(preflight.check_kv_references(load("configreferences-appsettings.json")))
    (message,) = found["error"]
    assert message.startswith("WEBSITE_CONTENTAZUREFILECONNECTIONSTRING: Key Vault reference AccessToKeyVaultDenied")
    assert "denied access" in message


def test_resolved_or_absent_references_pass():
    answer = load("configreferences-appsettings.json")
    answer["value"][0]["properties"]["status"] = "Resolved"
    assert levels(preflight.check_kv_references(answer)).keys() == {"ok"}
    assert levels(preflight.check_kv_references({"value": []})).keys() == {"ok"}
    assert "error" in levels(preflight.check_kv_references({}))


def test_the_command_line_exits_1_on_an_error(tmp_path, capsys):
    rows = ["default|swedencentral|gpt-5.4-mini|gpt-5.4-mini|2026-03-17|GlobalStandard|80\n"]
    (tmp_path / "models.swedencentral.json").write_text(json.dumps(CATALOG[REGION]), encoding="utf-8")
    (tmp_path / "usages.swedencentral.json").write_text(json.dumps(USAGES[REGION]), encoding="utf-8")
    code = preflight.main(["models", "--models-dir", str(tmp_path), "--today", "2026-06-01"], stdin=rows)
    assert code == 1
    assert (
        "error: quota OpenAI.GlobalStandard.gpt-5.4-mini in swedencentral: 80 asked, 50 free" in capsys.readouterr().out
    )
    refs = FIXTURES / "configreferences-appsettings.json"
    assert preflight.main(["kv-references", "--references", str(refs)]) == 1
