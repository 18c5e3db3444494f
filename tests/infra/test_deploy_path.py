"""The deployment path agrees with itself: one build mode (built here, never in Azure) in azure.yaml, the Bicep and
scripts/deploy.sh; the SCM (deployment) site closed unless preflight finds a way in; the hooks that check before
code is deployed are wired and executable (docs/deploy.md, D72)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

import pytest

pytest.importorskip("pycep", reason="Bicep structural tests run in .venv-infra (scripts/check-infra.sh)")
yaml = pytest.importorskip("yaml")

from tests.infra.bicep_model import REPO_ROOT, Scope, one_resource, template  # noqa: E402
from tests.infra.test_bicep_rules import catalog, run_preflight  # noqa: E402

sys.path.insert(0, str(REPO_ROOT / "scripts"))

import build_package  # noqa: E402

DEPLOY_SH = (REPO_ROOT / "scripts" / "deploy.sh").read_text(encoding="utf-8")
PREFLIGHT_SH = (REPO_ROOT / "scripts" / "preflight.sh").read_text(encoding="utf-8")
DEFAULT_MODELS = catalog(
    ("gpt-5.4-mini", "2026-03-17", "GenerallyAvailable", ["GlobalStandard"]),
    ("text-embedding-3-small", "1", "GenerallyAvailable", ["GlobalStandard"]),
)


def azure_yaml() -> dict:
    return yaml.safe_load((REPO_ROOT / "azure.yaml").read_text(encoding="utf-8"))


def app_settings() -> dict:
    return Scope(template("modules/functionapp.bicep")).resolve("fixedSettings")


def shell_commands(text: str) -> str:
    """The script without its comment lines."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


# --- one build mode ---------------------------------------------------------------------------------------------


def test_build_mode_agrees_between_azure_yaml_bicep_and_deploy_script():
    api = azure_yaml()["services"]["api"]
    assert api["remoteBuild"] is False
    settings = app_settings()
    assert settings["SCM_DO_BUILD_DURING_DEPLOYMENT"] == "false"
    assert settings["ENABLE_ORYX_BUILD"] == "false"
    commands = shell_commands(DEPLOY_SH)
    uploads = re.findall(r"config-zip[^\n]*", commands)
    assert uploads and all("--build-remote false" in u for u in uploads), uploads
    assert "--build-remote true" not in commands and "REMOTE_BUILD" not in commands
    # deploy.sh sets no app setting: provision (the Bicep) owns them all.
    assert not re.search(r"appsettings\s+(set|delete)", commands)
    assert "--local-build" not in commands


def test_azd_and_deploy_script_build_the_package_with_the_same_script():
    prepackage = azure_yaml()["services"]["api"]["hooks"]["prepackage"]
    assert prepackage["run"] == "python3 scripts/build_package.py" and prepackage["continueOnError"] is False
    assert 'python3 scripts/build_package.py --zip "$ZIP"' in shell_commands(DEPLOY_SH)
    assert "pip install" not in shell_commands(DEPLOY_SH)


def test_the_package_is_built_for_the_apps_python_version_as_manylinux_wheels_only():
    site = one_resource(template("modules/functionapp.bicep"), "Microsoft.Web/sites")
    runtime = site["properties"]["siteConfig"]["linuxFxVersion"]
    assert runtime == f"Python|{build_package.plan_python_version()}"
    source = (REPO_ROOT / "scripts" / "build_package.py").read_text(encoding="utf-8")
    assert '"--only-binary=:all:"' in source and all(p.startswith("manylinux") for p in build_package.PLATFORMS)


def test_cache_key_follows_the_requirements_and_the_python_version():
    key = build_package.cache_key(b"aiohttp\n", "3.11")
    assert key == build_package.cache_key(b"aiohttp\n", "3.11")
    assert key != build_package.cache_key(b"aiohttp\nhttpx\n", "3.11")
    assert key != build_package.cache_key(b"aiohttp\n", "3.12")
    gitignore = (REPO_ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    funcignore = (REPO_ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
    assert ".package-cache/" in gitignore and "/.package-cache/" in funcignore
    assert not any(line.strip().lstrip("/").startswith(".python_packages") for line in funcignore)


# --- the SCM (deployment) site ----------------------------------------------------------------------------------


def test_scm_site_denies_by_default_and_admits_only_the_parameter_ranges():
    site = one_resource(template("modules/functionapp.bicep"), "Microsoft.Web/sites")
    config = site["properties"]["siteConfig"]
    assert config["scmIpSecurityRestrictionsDefaultAction"] == "Deny"
    assert config["scmIpSecurityRestrictionsUseMain"] is False
    assert "SCM_ALLOWED_IP_RANGES" in (REPO_ROOT / "bicep" / "main.bicepparam").read_text(encoding="utf-8")


def test_preflight_refuses_a_closed_deploy_path_and_opens_it_only_with_consent(tmp_path):
    closed = run_preflight(tmp_path, DEFAULT_MODELS, SCM_ALLOWED_IP_RANGES="")
    assert closed.returncode == 1
    assert "the deployment (SCM) site would deny everyone" in closed.stderr
    assert "nothing was deployed" in closed.stderr
    assert (
        run_preflight(tmp_path, DEFAULT_MODELS, SCM_ALLOWED_IP_RANGES="", ENABLE_PRIVATE_INBOUND="true").returncode == 0
    )
    assert run_preflight(tmp_path, DEFAULT_MODELS).returncode == 0  # an allowed range
    # Consent: the deployer's address (DEPLOYER_IP here, so no lookup) becomes the allowed range.
    consent = run_preflight(
        tmp_path, DEFAULT_MODELS, SCM_ALLOWED_IP_RANGES="", SCM_ALLOW_DEPLOYER_IP="true", DEPLOYER_IP="198.51.100.4"
    )
    assert consent.returncode == 0, consent.stderr
    assert "SCM_ALLOWED_IP_RANGES=198.51.100.4/32" in consent.stdout
    bad = run_preflight(
        tmp_path, DEFAULT_MODELS, SCM_ALLOWED_IP_RANGES="", SCM_ALLOW_DEPLOYER_IP="true", DEPLOYER_IP="x"
    )
    assert bad.returncode == 1 and "public address could not be read" in bad.stderr


def test_the_code_upload_checks_the_deploy_path_first():
    predeploy = azure_yaml()["services"]["api"]["hooks"]["predeploy"]
    assert predeploy["run"] == "bash scripts/preflight.sh --deploy-path" and predeploy["continueOnError"] is False
    commands = shell_commands(DEPLOY_SH)
    assert commands.index("scripts/preflight.sh --deploy-path") < commands.index("config-zip")


# --- hooks ------------------------------------------------------------------------------------------------------


def test_hooks_are_wired_and_their_scripts_executable():
    doc = azure_yaml()
    hooks = {**doc["hooks"], **{f"api {k}": v for k, v in doc["services"]["api"]["hooks"].items()}}
    assert set(hooks) == {"preprovision", "postprovision", "api prepackage", "api predeploy"}
    tracked = subprocess.run(
        ["git", "ls-files", "-s", "scripts"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    modes = {line.split("\t")[1]: line.split()[0] for line in tracked.splitlines()}
    for name, hook in hooks.items():
        assert hook["continueOnError"] is False, name
        script = re.search(r"scripts/[\w.-]+", hook["run"]).group(0)
        path = REPO_ROOT / script
        assert path.is_file(), (name, script)
        assert path.stat().st_mode & stat.S_IXUSR and modes.get(script) == "100755", (name, script)


def test_deploy_script_runs_the_same_checks_in_the_same_order():
    commands = shell_commands(DEPLOY_SH)
    order = [
        "scripts/preflight.sh --location",
        "az deployment group create",
        "scripts/postprovision.sh",
        "scripts/build_package.py --zip",
        "scripts/preflight.sh --deploy-path",
        "config-zip",
    ]
    positions = [commands.index(step) for step in order]
    assert positions == sorted(positions), dict(zip(order, positions, strict=True))


def test_postprovision_refreshes_then_reads_the_key_vault_reference_status():
    text = shell_commands((REPO_ROOT / "scripts" / "postprovision.sh").read_text(encoding="utf-8"))
    refresh = text.index("/config/configreferences/appsettings/refresh?api-version=")
    read = text.index("/config/configreferences/appsettings?api-version=")
    assert refresh < read and "tools/preflight.py kv-references" in text
    assert "az rest --method post" in text and "az rest --method get" in text


@pytest.mark.skipif(os.name != "posix", reason="shell script")
def test_preflight_stops_on_a_soft_deleted_vault_with_the_recover_command(tmp_path):
    vault = {
        "name": "kv-abc",
        "properties": {
            "location": "swedencentral",
            "purgeProtectionEnabled": True,
            "tags": {"azd-env-name": "ci"},
            "vaultId": "/subscriptions/s/resourceGroups/rg-ci/providers/Microsoft.KeyVault/vaults/kv-abc",
        },
    }
    result = run_preflight(tmp_path, DEFAULT_MODELS, deleted=([vault], []), AZURE_RESOURCE_GROUP="rg-ci")
    assert result.returncode == 1
    assert "az keyvault recover --name kv-abc" in result.stderr
    assert "KEY_VAULT_CREATE_MODE" not in PREFLIGHT_SH and "OPENAI_RESTORE" not in PREFLIGHT_SH


@pytest.mark.skipif(os.name != "posix", reason="shell script")
def test_preflight_stops_on_capacity_beyond_the_free_quota(tmp_path):
    usages = [{"name": {"value": "OpenAI.GlobalStandard.gpt-5.4-mini"}, "currentValue": 440, "limit": 450}]
    result = run_preflight(tmp_path, DEFAULT_MODELS, usages=usages)
    assert result.returncode == 1
    assert "quota OpenAI.GlobalStandard.gpt-5.4-mini in swedencentral: 50 asked, 10 free" in result.stderr
