"""Cross-file rules over the parsed Bicep (and the scripts around it) that neither checkov nor a single-file
look can catch: where private endpoints live, what API Management exposes, what zone redundancy implies, what
what-if can resolve, which switches need which values, where diagnostics go, how egress is limited.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("pycep", reason="Bicep structural tests run in .venv-infra (scripts/check-infra.sh)")

from tests.infra.bicep_model import (  # noqa: E402
    BICEP_DIR,
    REPO_ROOT,
    Scope,
    bicep_files,
    get,
    modules,
    one_resource,
    parse,
    resources,
    resources_of_type,
    template,
)


def main_modules() -> dict[str, dict]:
    return modules(template("main.bicep"))


def module_file(symbol: str) -> str:
    return "modules/" + Path(main_modules()[symbol]["path"]).name


def dump(value) -> str:
    return json.dumps(value, sort_keys=True)


def refers_to(value, name: str) -> bool:
    """True if the parsed expression mentions the identifier `name` (bare, interpolated or as an operand)."""
    return re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", dump(value)) is not None


# --- private endpoints live in their VNet's region ----------------------------------------------------------------


def test_every_private_endpoint_is_in_the_vnets_region():
    network_location = main_modules()["network"]["body"]["params"]["location"]
    checked = 0
    for symbol, module in main_modules().items():
        relative = module_file(symbol)
        tpl = template(relative)
        endpoint_calls = [m for m in modules(tpl).values() if Path(m["path"]).name == "private-endpoint.bicep"]
        for call in endpoint_calls:
            location_param = call["body"]["params"]["location"]
            assert isinstance(location_param, str) and location_param in tpl["parameters"], (relative, location_param)
            passed = module["body"]["params"].get(location_param)
            assert passed == network_location == "location", (
                f"{relative}: its private endpoint's location comes from parameter {location_param!r}, which "
                f"main.bicep sets to {passed!r}; it must be the VNet's region ({network_location!r})"
            )
            checked += 1
    assert checked >= 6  # storage, content share, vault, OpenAI, AMPLS, sites


def test_openai_account_may_be_elsewhere_but_its_endpoint_is_not():
    params = main_modules()["openAi"]["body"]["params"]
    assert params["location"] == "openAiRegion" and params["privateEndpointLocation"] == "location"
    main = template("main.bicep")
    assert Scope(main, {"location": "westeurope", "openAiLocation": ""}).resolve("openAiRegion") == "westeurope"
    assert Scope(main, {"location": "westeurope", "openAiLocation": "eastus2"}).resolve("openAiRegion") == "eastus2"


# --- API Management covers every function route, from the generated route list ---------------------------------


def test_apim_builds_its_operations_from_the_generated_route_list():
    tpl = template("modules/apim.bicep")
    load = tpl["variables"]["routes"]["value"]["function"]
    assert load["type"] == "load_json_content" and load["parameters"]["file_path"] == "../apim-routes.json"
    operations = resources_of_type(tpl, "Microsoft.ApiManagement/service/apis/operations")
    assert len(operations) == 1, "every operation comes from the route list; no hand-written (wildcard) operations"
    (op,) = operations.values()
    loop = op["raw"]["loop_type"]["detail"]
    assert loop["array_name"] == {
        "operator": {"type": "property_accessor", "operands": {"operand_1": "routes", "operand_2": "operations"}}
    }
    item = loop["item_name"]
    props = op["body"]["properties"]
    for field in ("method", "urlTemplate", "templateParameters"):
        assert props[field] == {
            "operator": {"type": "property_accessor", "operands": {"operand_1": item, "operand_2": field}}
        }, field
    api = one_resource(tpl, "Microsoft.ApiManagement/service/apis")
    assert refers_to(api["properties"]["path"], "routes") and "routes.routePrefix" in api["properties"]["serviceUrl"]


def test_generated_route_list_is_well_formed_and_covers_put():
    doc = json.loads((BICEP_DIR / "apim-routes.json").read_text(encoding="utf-8"))
    assert doc["generatedBy"] == "python scripts/gen_apim_routes.py"
    host = json.loads((REPO_ROOT / "host.json").read_text(encoding="utf-8"))
    assert doc["routePrefix"] == host.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    ops = doc["operations"]
    names = [op["name"] for op in ops]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,79}", n) for n in names)
    methods = {op["method"] for op in ops}
    assert {"GET", "POST", "PUT", "DELETE"} <= methods
    for op in ops:
        assert op["urlTemplate"].startswith("/") and "*" not in op["urlTemplate"]
        assert [p["name"] for p in op["templateParameters"]] == re.findall(r"\{(\w+)\}", op["urlTemplate"])


# --- inbound: only APIM when it fronts the app; SCM restricted in every mode -------------------------------------


def site_config(**overrides) -> dict:
    tpl = template("modules/functionapp.bicep")
    body = one_resource(tpl, "Microsoft.Web/sites")
    return Scope(tpl, overrides).resolve(body["properties"]["siteConfig"])


def test_with_apim_the_site_admits_only_apims_subnet():
    config = site_config(restrictToApim=True, apimSubnetId="<apim subnet id>")
    assert config["ipSecurityRestrictionsDefaultAction"] == "Deny"
    (rule,) = config["ipSecurityRestrictions"]
    assert rule["action"] == "Allow" and rule["vnetSubnetResourceId"] == "<apim subnet id>"
    assert site_config()["ipSecurityRestrictionsDefaultAction"] == "Allow"  # no APIM: Easy Auth guards the app
    params = main_modules()["functionApp"]["body"]["params"]
    main = template("main.bicep")
    for apim, private in ((True, False), (True, True), (False, False), (False, True)):
        restrict = Scope(main, {"enableApim": apim, "enablePrivateInbound": private}).resolve(params["restrictToApim"])
        # Service-endpoint rules aren't supported with a private endpoint; APIM then comes in through it.
        assert restrict is (apim and not private), (apim, private)
    subnets = Scope(template("modules/network.bicep")).resolve("apimSubnets")
    assert subnets[0]["properties"]["serviceEndpoints"] == [{"service": "Microsoft.Web"}]


def test_scm_site_is_restricted_in_every_mode():
    for overrides in ({}, {"restrictToApim": True}, {"enablePrivateInbound": True}):
        config = site_config(**overrides)
        assert config["scmIpSecurityRestrictionsDefaultAction"] == "Deny", overrides
        assert config["scmIpSecurityRestrictionsUseMain"] is False, overrides
    scm = one_resource(template("modules/functionapp.bicep"), "Microsoft.Web/sites")
    tpl = template("modules/functionapp.bicep")
    assert scm["properties"]["siteConfig"]["scmIpSecurityRestrictions"] == "scmRestrictions"
    loop = tpl["variables"]["scmRestrictions"]["value"]
    assert loop["loop_type"]["detail"]["array_name"] == "scmAllowedIpRanges"
    assert loop["config"]["action"] == "Allow"


# --- zone redundancy implies >= 3 instances and zone-redundant storage ---------------------------------------------


def test_zone_redundancy_implies_three_instances():
    tpl = template("modules/functionapp.bicep")
    plan = one_resource(tpl, "Microsoft.Web/serverfarms")
    assert plan["sku"]["capacity"] == "minimumInstances"
    assert plan["properties"]["zoneRedundant"] == "zoneRedundant"
    site = one_resource(tpl, "Microsoft.Web/sites")
    assert site["properties"]["siteConfig"]["minimumElasticInstanceCount"] == "minimumInstances"
    for minimum in (1, 2, 3, 5):
        zr = Scope(tpl, {"zoneRedundant": True, "minimumElasticInstanceCount": minimum})
        assert zr.resolve("minimumInstances") == max(3, minimum)
        assert zr.resolve("maximumInstances") >= 3
        assert Scope(tpl, {"minimumElasticInstanceCount": minimum}).resolve("minimumInstances") == minimum


def test_zone_redundancy_implies_zone_redundant_storage_for_both_accounts():
    main = template("main.bicep")
    for sku in main["parameters"]["storageSkuName"]["decorators"][0]["argument"]:
        effective = Scope(main, {"zoneRedundant": True, "storageSkuName": sku}).resolve("effectiveStorageSku")
        assert effective in ("Standard_ZRS", "Standard_GZRS"), (sku, effective)
        assert Scope(main, {"zoneRedundant": False, "storageSkuName": sku}).resolve("effectiveStorageSku") == sku
    for symbol in ("storage", "contentStorage"):
        assert main_modules()[symbol]["body"]["params"]["skuName"] == "effectiveStorageSku", symbol
    assert main_modules()["functionApp"]["body"]["params"]["zoneRedundant"] == "zoneRedundant"


# --- an enabled feature has its required parameters ---------------------------------------------------------------


def decorator(param: dict, kind: str):
    return next((d for d in param.get("decorators", []) if d.get("type") == kind), None)


def test_jumpbox_needs_a_key_and_makes_encryption_at_host_optional():
    tpl = template("modules/jumpbox.bicep")
    key = tpl["parameters"]["sshPublicKey"]
    assert key.get("default") is None and decorator(key, "min_length")["argument"] >= 16
    assert tpl["parameters"]["encryptionAtHost"]["default"] is False
    vm = one_resource(tpl, "Microsoft.Compute/virtualMachines")
    assert vm["properties"]["securityProfile"]["encryptionAtHost"] == "encryptionAtHost"
    os_profile = vm["properties"]["osProfile"]
    assert os_profile["linuxConfiguration"]["patchSettings"]["patchMode"] == "AutomaticByPlatform"
    assert os_profile["allowExtensionOperations"] is True  # platform patching needs it
    params = main_modules()["jumpbox"]["body"]["params"]
    key_expr = params["sshPublicKey"]["operator"]["operands"]
    assert key_expr["condition"] == "enableJumpbox" and key_expr["true_value"] == "jumpboxSshPublicKey"
    assert params["encryptionAtHost"] == "jumpboxEncryptionAtHost"
    assert main_modules()["jumpbox"]["raw"]["condition"] == "enableJumpbox"


def test_apim_needs_a_publisher_email():
    email = template("modules/apim.bicep")["parameters"]["publisherEmail"]
    assert email.get("default") is None and decorator(email, "min_length")["argument"] >= 3
    assert main_modules()["apim"]["raw"]["condition"] == "enableApim"
    email_expr = main_modules()["apim"]["body"]["params"]["publisherEmail"]["operator"]["operands"]
    assert email_expr["condition"] == "enableApim" and email_expr["true_value"] == "apimPublisherEmail"


def test_private_inbound_needs_its_zone_and_api_keys_switch_easy_auth():
    params = main_modules()["functionApp"]["body"]["params"]
    zone = params["sitesPrivateDnsZoneId"]["operator"]["operands"]
    assert zone["condition"] == "enablePrivateInbound"


PREFLIGHT = REPO_ROOT / "scripts" / "preflight.sh"


def run_preflight(
    tmp_path: Path, models: list[dict], usages: list[dict] | None = None, deleted: tuple[list, list] = ([], []), **env
) -> subprocess.CompletedProcess:
    """scripts/preflight.sh against a stub `az` that answers `model list` with `models`, `usage list` with `usages`
    and the soft-deleted listings with `deleted` (vaults, accounts)."""
    stub = tmp_path / "az"
    (tmp_path / "models.json").write_text(json.dumps(models), encoding="utf-8")
    (tmp_path / "usages.json").write_text(json.dumps(usages or []), encoding="utf-8")
    (tmp_path / "vaults.json").write_text(json.dumps(deleted[0]), encoding="utf-8")
    (tmp_path / "accounts.json").write_text(json.dumps(deleted[1]), encoding="utf-8")
    stub.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        f'  *"model list"*) cat "{tmp_path}/models.json" ;;\n'
        f'  *"usage list"*) cat "{tmp_path}/usages.json" ;;\n'
        f'  *"keyvault list-deleted"*) cat "{tmp_path}/vaults.json" ;;\n'
        f'  *"account list-deleted"*) cat "{tmp_path}/accounts.json" ;;\n'
        '  *"group exists"*) echo false ;;\n'
        '  *"feature show"*) echo NotRegistered ;;\n'
        "  *) echo 00000000-0000-0000-0000-000000000000 ;;\n"
        "esac\n",
        encoding="utf-8",
    )
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    base = {
        "PATH": f"{tmp_path}:/usr/bin:/bin",
        "AZURE_ENV_NAME": "ci",
        "AZURE_LOCATION": "swedencentral",
        "GATEWAY_AUTH_CLIENT_ID": "11111111-1111-1111-1111-111111111111",
        "SCM_ALLOWED_IP_RANGES": "203.0.113.7/32",
    }
    return subprocess.run(["bash", str(PREFLIGHT)], env={**base, **env}, capture_output=True, text=True, timeout=60)


def catalog(*entries: tuple[str, str, str, list[str]]) -> list[dict]:
    return [
        {
            "kind": "OpenAI",
            "model": {"name": n, "version": v, "lifecycleStatus": s, "skus": [{"name": k} for k in skus]},
        }
        for n, v, s, skus in entries
    ]


def test_preflight_accepts_the_default_models_when_offered(tmp_path):
    models = catalog(
        ("gpt-5.4-mini", "2026-03-17", "GenerallyAvailable", ["GlobalStandard"]),
        ("text-embedding-3-small", "1", "GenerallyAvailable", ["GlobalStandard", "Standard"]),
    )
    result = run_preflight(tmp_path, models)
    assert result.returncode == 0, result.stderr


def test_preflight_fails_early_on_a_retired_or_missing_model(tmp_path):
    models = catalog(
        ("gpt-4o-mini", "2024-07-18", "Deprecated", ["GlobalStandard"]),
        ("text-embedding-3-small", "1", "GenerallyAvailable", ["Standard"]),
    )
    result = run_preflight(
        tmp_path, models, AZURE_OPENAI_CHAT_MODEL="gpt-4o-mini", AZURE_OPENAI_CHAT_MODEL_VERSION="2024-07-18"
    )
    assert result.returncode == 1
    assert "gpt-4o-mini 2024-07-18 has lifecycle status Deprecated" in result.stderr
    assert "has no GlobalStandard deployment type" in result.stderr  # embeddings: SKU not offered
    assert "nothing was deployed" in result.stderr


def test_preflight_fails_early_on_missing_switch_values(tmp_path):
    result = run_preflight(tmp_path, [], ENABLE_JUMPBOX="true", ENABLE_APIM="true", JUMPBOX_ENCRYPTION_AT_HOST="true")
    assert result.returncode == 1
    assert "needs JUMPBOX_SSH_PUBLIC_KEY" in result.stderr
    assert "needs APIM_PUBLISHER_EMAIL" in result.stderr
    result = run_preflight(
        tmp_path,
        [],
        ENABLE_JUMPBOX="true",
        JUMPBOX_ENCRYPTION_AT_HOST="true",
        JUMPBOX_SSH_PUBLIC_KEY="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample user@host",
    )
    assert "Microsoft.Compute/EncryptionAtHost is 'NotRegistered'" in result.stderr


# --- models: parameters, azd variables, preflight defaults agree; none closed to new customers -------------------

# Closed to new customers / retired by 2026-12-01 per Microsoft's model retirement schedule (docs/infrastructure.md).
CLOSED_MODELS = {
    ("gpt-4o-mini", "2024-07-18"),
    ("gpt-4.1-mini", "2025-04-14"),
    ("gpt-4o", "2024-11-20"),
    ("gpt-4.1", "2025-04-14"),
    ("o4-mini", "2025-04-16"),
    ("o3-mini", "2025-01-31"),
}


def bicepparam_defaults() -> dict[str, str]:
    text = (BICEP_DIR / "main.bicepparam").read_text(encoding="utf-8")
    return dict(re.findall(r"readEnvironmentVariable\('([A-Z0-9_]+)', '([^']*)'\)", text))


def preflight_defaults() -> dict[str, str]:
    text = PREFLIGHT.read_text(encoding="utf-8")
    return dict(re.findall(r'"\$\{([A-Z0-9_]+):-([^}]*)\}"', text))


def test_model_defaults_agree_between_bicep_bicepparam_and_preflight():
    main_default = template("main.bicep")["parameters"]["openAiDeployments"]["default"]
    bp, pf = bicepparam_defaults(), preflight_defaults()
    for kind, deployment in zip(("CHAT", "EMBEDDING"), main_default, strict=True):
        expected = {
            f"AZURE_OPENAI_{kind}_DEPLOYMENT": deployment["name"],
            f"AZURE_OPENAI_{kind}_MODEL": deployment["model"]["name"],
            f"AZURE_OPENAI_{kind}_MODEL_VERSION": deployment["model"]["version"],
            f"AZURE_OPENAI_{kind}_SKU": deployment["sku"]["name"],
            f"AZURE_OPENAI_{kind}_CAPACITY": str(deployment["sku"]["capacity"]),
        }
        for var, value in expected.items():
            assert bp[var] == value, (var, bp.get(var), value)
            assert pf[var] == value, (var, pf.get(var), value)
        assert (deployment["model"]["name"], deployment["model"]["version"]) not in CLOSED_MODELS
    assert bp["AZURE_OPENAI_API_VERSION"] == template("main.bicep")["parameters"]["openAiApiVersion"]["default"]


# --- what-if can resolve every resource ID ---------------------------------------------------------------------


def runtime_value(expr) -> bool:
    """A value only known during deployment: a module output or a resource's runtime properties."""
    text = dump(expr)
    return '"outputs"' in text or '"properties"' in text or "listKeys" in text


def identity_fields(body: dict) -> list:
    """The parts of a resource or module body that determine resource IDs (what-if needs them up front)."""
    return [body.get(k) for k in ("name", "scope", "parent") if k in body]


def test_no_module_names_a_resource_from_a_runtime_value():
    for symbol, module in main_modules().items():
        relative = module_file(symbol)
        tpl = template(relative)
        runtime_params = [p for p, v in module["body"]["params"].items() if runtime_value(v)]
        id_parts = [identity_fields(r["body"]) for r in resources(tpl).values()]
        id_parts += [identity_fields(m["body"]) + [m["raw"].get("condition")] for m in modules(tpl).values()]
        id_parts += [r["raw"].get("condition") for r in resources(tpl).values() if isinstance(r["raw"], dict)]
        for param in runtime_params:
            assert not refers_to(id_parts, param), (
                f"main.bicep passes a runtime value to {relative} parameter {param!r}, which names or scopes a "
                "resource there: what-if short-circuits. Compute the name in main.bicep instead."
            )


def test_role_assignment_names_are_seeded_with_resource_ids_not_principal_ids():
    for path in bicep_files():
        for symbol, res in resources_of_type(parse(path), "Microsoft.Authorization/roleAssignments").items():
            seed = res["body"]["name"]["function"]
            assert seed["type"] == "guid", (path.name, symbol)
            assert not refers_to(seed, "principalId"), f"{path.name}: {symbol} seeds its name with a principal id"
            assert "properties" not in dump(seed), f"{path.name}: {symbol} seeds its name with a runtime property"


def test_bicepconfig_turns_linter_warnings_into_errors():
    config = json.loads((BICEP_DIR / "bicepconfig.json").read_text(encoding="utf-8"))
    linter = config["analyzers"]["core"]
    assert linter["enabled"] is True
    rules = linter["rules"]
    assert rules["what-if-short-circuiting"]["level"] == "error"
    assert all(rule.get("level") in ("error", "off") for rule in rules.values()), rules
    workflow = (REPO_ROOT / ".github" / "workflows" / "infra.yml").read_text(encoding="utf-8")
    assert "az bicep build" in workflow and "az bicep lint" in workflow and "what-if" in workflow


# --- diagnostics reach Log Analytics ---------------------------------------------------------------------------


def diagnostic_categories(relative: str) -> dict[str, set[str]]:
    """scope symbol -> enabled log categories of its diagnostic settings."""
    out: dict[str, set[str]] = {}
    tpl = template(relative)
    for res in resources_of_type(tpl, "Microsoft.Insights/diagnosticSettings").values():
        body = Scope(tpl).resolve(res["body"])
        assert body["properties"]["workspaceId"] == "logAnalyticsWorkspaceId", relative
        out[res["body"]["scope"]] = {log["category"] for log in body["properties"].get("logs", []) if log["enabled"]}
    return out


def test_diagnostics_cover_vault_openai_storage_services_and_apim():
    storage_logs = {"StorageRead", "StorageWrite", "StorageDelete"}
    assert "AuditEvent" in diagnostic_categories("modules/keyvault.bicep")["vault"]
    assert {"Audit", "RequestResponse"} <= diagnostic_categories("modules/openai.bicep")["account"]
    host = diagnostic_categories("modules/storage.bicep")
    for service in ("blobService", "queueService", "tableService"):
        assert storage_logs <= host[service], service
    assert storage_logs <= diagnostic_categories("modules/content-storage.bicep")["fileService"]
    assert "GatewayLogs" in diagnostic_categories("modules/apim.bicep")["apim"]
    assert "FunctionAppLogs" in diagnostic_categories("modules/functionapp.bicep")["site"]
    for symbol in ("storage", "contentStorage", "keyVault", "openAi", "openAiPool", "apim"):
        workspace = main_modules()[symbol]["body"]["params"]["logAnalyticsWorkspaceId"]
        assert refers_to(workspace, "monitoring") and '"workspaceId"' in dump(workspace), symbol


def test_apim_logs_to_application_insights_with_its_identity():
    tpl = template("modules/apim.bicep")
    logger = one_resource(tpl, "Microsoft.ApiManagement/service/loggers")
    assert logger["properties"]["loggerType"] == "applicationInsights"
    assert logger["properties"]["credentials"]["identityClientId"] == "SystemAssigned"
    diagnostic = one_resource(tpl, "Microsoft.ApiManagement/service/diagnostics")
    assert diagnostic["name"] == "applicationinsights"
    (role,) = resources_of_type(tpl, "Microsoft.Authorization/roleAssignments").values()
    assert refers_to(role["body"]["properties"]["roleDefinitionId"], "roleMonitoringMetricsPublisher")
    assert tpl["variables"]["roleMonitoringMetricsPublisher"]["value"] == "3913510d-42f4-4e42-8a64-420c390055eb"


# --- egress and callers ----------------------------------------------------------------------------------------


def app_nsg_rules(**overrides) -> list[dict]:
    tpl = template("modules/network.bicep")
    nsg = resources(tpl)["nsgApp"]["body"]
    return Scope(tpl, overrides).resolve(nsg["properties"]["securityRules"])


def test_app_subnet_egress_is_limited_to_vnet_entra_and_monitor():
    rules = app_nsg_rules()
    outbound = [r["properties"] for r in rules if r["properties"]["direction"] == "Outbound"]
    allowed = {r["destinationAddressPrefix"] for r in outbound if r["access"] == "Allow"}
    assert allowed == {"VirtualNetwork", "AzureActiveDirectory", "AzureMonitor"}
    deny = [r for r in outbound if r["access"] == "Deny"]
    assert [r["destinationAddressPrefix"] for r in deny] == ["Internet"]
    assert max(r["priority"] for r in outbound if r["access"] == "Allow") < deny[0]["priority"]
    extra = app_nsg_rules(egressAllowedAddressPrefixes=["203.0.113.0/24"])
    assert any(r["properties"].get("destinationAddressPrefixes") == ["203.0.113.0/24"] for r in extra)
    assert not [r for r in app_nsg_rules(restrictEgress=False) if r["properties"]["direction"] == "Outbound"]
    assert template("modules/network.bicep")["parameters"]["restrictEgress"]["default"] is True


def test_private_endpoint_callers_reach_only_the_sites_endpoint():
    tpl = template("modules/network.bicep")
    nsg = resources(tpl)["nsgPrivateEndpoints"]["body"]
    rules = Scope(tpl, {"privateInboundAllowedSourcePrefixes": ["10.50.0.0/16"]}).resolve(
        nsg["properties"]["securityRules"]
    )
    (callers,) = [r["properties"] for r in rules if r["name"] == "AllowCallersToSitesEndpoint"]
    assert callers["sourceAddressPrefixes"] == ["10.50.0.0/16"] and callers["destinationPortRange"] == "443"
    assert "destinationAddressPrefix" not in callers  # not the whole subnet (storage, vault, OpenAI)
    assert refers_to(callers["destinationApplicationSecurityGroups"], "asgSites")
    callers_priority = callers["priority"]
    deny = [r["properties"] for r in rules if r["properties"]["access"] == "Deny"]
    assert all(callers_priority < d["priority"] for d in deny)
    site_pe = next(
        m
        for m in modules(template("modules/functionapp.bicep")).values()
        if Path(m["path"]).name == "private-endpoint.bicep"
    )
    assert refers_to(site_pe["body"]["params"]["applicationSecurityGroupIds"], "sitesApplicationSecurityGroupId")
    assert main_modules()["network"]["body"]["params"]["privateInboundAllowedSourcePrefixes"] == (
        "privateInboundAllowedSourcePrefixes"
    )


# --- content share: the Key Vault reference is applied after the site exists -------------------------------------


def test_content_share_key_vault_reference_is_applied_after_site_creation():
    tpl = template("modules/functionapp.bicep")
    configs = {r["body"]["name"]: r for r in resources_of_type(tpl, "Microsoft.Web/sites/config").values()}
    appsettings = configs["appsettings"]
    assert appsettings["raw"]["condition"] == "deferContentShare"
    assert appsettings["body"]["properties"] == "deferredSettings"
    site = one_resource(tpl, "Microsoft.Web/sites")
    creation = Scope(tpl, {"deferContentShare": True}).resolve(site["properties"]["siteConfig"]["appSettings"])
    assert creation is None or creation == "null", "no Key Vault reference in the site's creation request"
    assert tpl["parameters"]["contentShareMode"]["default"] == "keyVaultReferenceAfterCreation"
    assert main_modules()["functionApp"]["body"]["params"]["contentShareMode"] == "contentShareMode"


# --- redeploy after azd down ------------------------------------------------------------------------------------


def test_soft_deleted_resources_are_recovered_by_command_or_avoided_never_by_a_create_mode_switch():
    """Preflight detects soft-deleted names and prints the recover/purge commands (tools/preflight.py); the Bicep
    always deploys in its default mode, so nothing has to be switched back after a recovery."""
    main = template("main.bicep")
    assert "resourceNameSalt" in dump(main["variables"]["resourceToken"])
    kv = one_resource(template("modules/keyvault.bicep"), "Microsoft.KeyVault/vaults")
    assert "createMode" not in kv["properties"]
    oai = one_resource(template("modules/openai.bicep"), "Microsoft.CognitiveServices/accounts")
    assert "restore" not in oai["properties"]
    bp = bicepparam_defaults()
    assert "RESOURCE_NAME_SALT" in bp
    assert not {"KEY_VAULT_CREATE_MODE", "OPENAI_RESTORE"} & set(bp)


def test_get_helper_names_missing_segments():
    with pytest.raises(KeyError, match="nope"):
        get({"a": {}}, "a.nope")


@pytest.mark.skipif(os.name != "posix", reason="shell script")
def test_preflight_is_wired_into_azd_and_deploy_script():
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text(encoding="utf-8"))
    assert "scripts/preflight.sh" in doc["hooks"]["preprovision"]["run"]
    assert "scripts/preflight.sh" in (REPO_ROOT / "scripts" / "deploy.sh").read_text(encoding="utf-8")


def test_entra_assignment_script_sets_app_role_assignment_required():
    script = (REPO_ROOT / "scripts" / "entra-require-assignment.sh").read_text(encoding="utf-8")
    assert 'az ad sp update --id "$API_ID" --set appRoleAssignmentRequired=true' in script
    assert "--check" in script  # report-only mode for audits
