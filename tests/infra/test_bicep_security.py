"""Structural security tests over the parsed Bicep templates (pycep-parser, the parser checkov uses).

They assert what checkov has no rules for (private endpoints and their DNS zone groups, AMPLS, role
assignments, Easy Auth v2) and re-assert the key properties it does check, so a silently skipped file or
a weakened setting fails here too.
"""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("pycep", reason="Bicep structural tests run in .venv-infra (scripts/check-infra.sh)")

from tests.infra.bicep_model import (  # noqa: E402
    BICEP_DIR,
    Scope,
    bicep_files,
    checkov_skips,
    modules,
    one_resource,
    parse,
    resources,
    resources_of_type,
    template,
)

ROLE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
ROLE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
ROLE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
ROLE_OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"
ROLE_KV_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
ROLE_MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
STORAGE_ACCOUNT_CONTRIBUTOR = "17d1049b-9a84-46fb-8f53-869881c3d3ab"

GATEWAY_TABLES = {
    "gatewayApiKeys",
    "gatewayCallerPolicies",
    "gatewayUsage",
    "gatewayQuota",
    "gatewayPrices",
    "gatewayUsageDaily",
    "gatewayUsageHourly",
    "gatewayObjects",
}


def main_scope(**overrides) -> Scope:
    return Scope(template("main.bicep"), overrides)


def role_ids(tpl: dict) -> dict[str, dict]:
    """role definition GUID -> role assignment body, resolved through the file's variables."""
    scope = Scope(tpl)
    out = {}
    for res in resources_of_type(tpl, "Microsoft.Authorization/roleAssignments").values():
        definition = res["body"]["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        out[scope.resolve(definition)] = res["body"]
    return out


def module_params(symbol: str) -> dict:
    return modules(template("main.bicep"))[symbol]["body"]["params"]


def zone_names(refs) -> list[str]:
    """resourceId('Microsoft.Network/privateDnsZones', zoneX) expressions -> zone names (via main's variables)."""
    scope = main_scope()
    names = []
    for ref in refs:
        fn = ref["function"]
        assert fn["type"] == "resource_id"
        assert fn["parameters"]["resource_type"] == "Microsoft.Network/privateDnsZones"
        names.append(scope.resolve(fn["parameters"]["resource_name_1"]))
    return names


# --- every file -------------------------------------------------------------------------------------------


def test_every_bicep_file_parses_with_checkovs_parser():
    files = bicep_files()
    assert (BICEP_DIR / "main.bicep") in files and len(files) >= 9
    for path in files:
        assert parse(path), path


def test_every_checkov_skip_has_a_reason():
    for path, line, check, reason in checkov_skips():
        assert len(reason) >= 20, f"{path.name}:{line} skip of {check} needs a justification"


def test_role_assignments_are_for_a_service_principal_with_deterministic_names():
    count = 0
    for path in bicep_files():
        for res in resources_of_type(parse(path), "Microsoft.Authorization/roleAssignments").values():
            count += 1
            body = res["body"]
            assert body["properties"]["principalType"] == "ServicePrincipal", path
            assert body["name"]["function"]["type"] == "guid", path
            assert "scope" in body, path
    assert count >= 6


def test_no_storage_account_contributor_role():
    """That role grants the account key; host storage with an identity does not need it."""
    for path in bicep_files():
        assert STORAGE_ACCOUNT_CONTRIBUTOR not in path.read_text(), path


def test_only_expected_preview_api_versions():
    allowed_preview = {
        "Microsoft.Insights/privateLinkScopes",
        "Microsoft.Insights/privateLinkScopes/scopedResources",
        "Microsoft.Insights/diagnosticSettings",
    }
    for path in bicep_files():
        for symbol, res in resources(parse(path)).items():
            if "preview" in (res["api_version"] or ""):
                assert res["type"] in allowed_preview, f"{path.name}: {symbol} uses {res['api_version']}"


def test_no_secure_parameter_has_a_default_and_no_literal_keys():
    for path in bicep_files():
        text = path.read_text()
        assert not re.search(r"AccountKey=[A-Za-z0-9+/]{20}", text), path
        for name, param in (parse(path).get("parameters") or {}).items():
            decorators = [d.get("type") for d in param.get("decorators", [])]
            if "secure" in decorators:
                assert "default" not in param, f"{path.name}: {name}"


# --- network -----------------------------------------------------------------------------------------------


def test_app_subnet_is_delegated_to_server_farms_and_pe_subnet_enforces_nsg():
    tpl = template("modules/network.bicep")
    scope = Scope(tpl)
    subnets = {s["name"]: s["properties"] for s in scope.resolve("baseSubnets")}
    app = subnets["snet-app"]
    assert [d["properties"]["serviceName"] for d in app["delegations"]] == ["Microsoft.Web/serverFarms"]
    pe = subnets["snet-private-endpoints"]
    assert pe["privateEndpointNetworkPolicies"] == "Enabled"
    assert pe["networkSecurityGroup"]["id"]["operator"]["operands"]["operand_1"] == "nsgPrivateEndpoints"
    assert "delegations" not in pe


def test_private_endpoint_subnet_accepts_traffic_from_the_app_subnet_only():
    tpl = template("modules/network.bicep")
    scope = Scope(tpl, {"enableJumpbox": False, "enableApim": False})
    nsg = resources(tpl)["nsgPrivateEndpoints"]["body"]
    rules = scope.resolve(nsg["properties"]["securityRules"])
    assert isinstance(rules, list) and len(rules) == 2
    allows = [r for r in rules if r["properties"]["access"] == "Allow"]
    assert [r["properties"]["sourceAddressPrefix"] for r in allows] == ["10.20.0.0/24"]  # appSubnetPrefix default
    assert set(allows[0]["properties"]["destinationPortRanges"]) == {"443", "445"}
    last = max(rules, key=lambda r: r["properties"]["priority"])
    assert last["properties"]["access"] == "Deny" and last["properties"]["sourceAddressPrefix"] == "*"
    with_operators = Scope(tpl, {"enableJumpbox": True, "enableApim": True}).resolve(nsg["properties"]["securityRules"])
    operator = [r for r in with_operators if r["name"] == "AllowOperatorSubnetsHttps"]
    assert operator[0]["properties"]["sourceAddressPrefixes"] == ["10.20.2.0/27", "10.20.4.0/27"]
    assert operator[0]["properties"]["destinationPortRange"] == "443"
    for r in with_operators:
        source = r["properties"].get("sourceAddressPrefix")
        assert source not in ("Internet", "*") or r["properties"]["access"] == "Deny"


def test_private_dns_zones_are_global_and_linked_to_the_vnet():
    tpl = template("modules/private-dns-zones.bicep")
    zones = one_resource(tpl, "Microsoft.Network/privateDnsZones")
    assert zones["location"] == "global"
    link = one_resource(tpl, "Microsoft.Network/privateDnsZones/virtualNetworkLinks")
    assert link["properties"]["registrationEnabled"] is False
    assert link["properties"]["virtualNetwork"]["id"] == "vnetId"


def test_main_creates_every_required_zone_once():
    scope = main_scope(enablePrivateInbound=True)
    names = scope.resolve("baseZones") + ["privatelink.azurewebsites.net"]
    suffix = "${storageSuffix}"
    expected = {f"privatelink.{s}.{suffix}" for s in ("blob", "queue", "table", "file")} | {
        "privatelink.vaultcore.azure.net",
        "privatelink.openai.azure.com",
        "privatelink.cognitiveservices.azure.com",
        "privatelink.monitor.azure.com",
        "privatelink.oms.opinsights.azure.com",
        "privatelink.ods.opinsights.azure.com",
        "privatelink.agentsvc.azure-automation.net",
        "privatelink.azurewebsites.net",
    }
    assert set(names) == expected and len(names) == len(set(names))


# --- private endpoints ---------------------------------------------------------------------------------------


def test_private_endpoint_module_always_registers_a_dns_zone_group():
    tpl = template("modules/private-endpoint.bicep")
    res = resources(tpl)
    pe = res["privateEndpoint"]["body"]
    assert pe["properties"]["privateLinkServiceConnections"][0]["properties"]["groupIds"] == ["groupId"]
    groups = [r for r in res.values() if r["type"] == "Microsoft.Network/privateEndpoints/privateDnsZoneGroups"]
    assert len(groups) == 1
    configs = groups[0]["body"]["properties"]["privateDnsZoneConfigs"]
    assert configs["loop_type"]["detail"]["array_name"] == "privateDnsZoneIds"
    assert configs["config"]["properties"]["privateDnsZoneId"] == "zoneId"
    assert tpl["parameters"]["privateDnsZoneIds"].get("default") is None  # required: no endpoint without zones


def pe_modules(relative: str) -> list[dict]:
    return [m for m in modules(template(relative)).values() if m["path"] == "private-endpoint.bicep"]


def test_storage_has_blob_queue_table_endpoints_and_the_content_account_a_file_endpoint():
    tpl = template("modules/storage.bicep")
    (pe,) = pe_modules("modules/storage.bicep")
    assert pe["raw"]["loop_type"]["detail"]["array_name"] == "endpointGroups"
    assert Scope(tpl).resolve("endpointGroups") == ["blob", "queue", "table"]
    assert pe["body"]["params"]["groupId"] == "group"
    zones = module_params("storage")["privateDnsZoneIds"]
    assert dict(zip(zones, zone_names(zones.values()), strict=True)) == {
        "blob": "privatelink.blob.${storageSuffix}",
        "queue": "privatelink.queue.${storageSuffix}",
        "table": "privatelink.table.${storageSuffix}",
    }
    (file_pe,) = pe_modules("modules/content-storage.bicep")
    assert file_pe["body"]["params"]["groupId"] == "file"
    assert file_pe["body"]["params"]["privateDnsZoneIds"] == ["fileDnsZoneId"]
    assert zone_names([module_params("contentStorage")["fileDnsZoneId"]]) == ["privatelink.file.${storageSuffix}"]


def test_key_vault_openai_monitor_endpoints_use_their_zones():
    (kv,) = pe_modules("modules/keyvault.bicep")
    assert kv["body"]["params"]["groupId"] == "vault"
    assert zone_names([module_params("keyVault")["privateDnsZoneId"]]) == ["privatelink.vaultcore.azure.net"]

    (oai,) = pe_modules("modules/openai.bicep")
    assert oai["body"]["params"]["groupId"] == "account"
    assert zone_names(module_params("openAi")["privateDnsZoneIds"]) == [
        "privatelink.openai.azure.com",
        "privatelink.cognitiveservices.azure.com",
    ]

    (mon,) = pe_modules("modules/monitoring.bicep")
    assert mon["body"]["params"]["groupId"] == "azuremonitor"
    assert sorted(mon["body"]["dependsOn"]) == ["scopedAppInsights", "scopedWorkspace"]
    assert zone_names(module_params("monitoring")["privateDnsZoneIds"]) == [
        "privatelink.monitor.azure.com",
        "privatelink.oms.opinsights.azure.com",
        "privatelink.ods.opinsights.azure.com",
        "privatelink.agentsvc.azure-automation.net",
        "privatelink.blob.${storageSuffix}",  # the same zone the storage blob endpoint uses
    ]
    # Same variable, so the same zone resource: a VNet cannot link two zones with one name.
    monitoring_blob = module_params("monitoring")["privateDnsZoneIds"][-1]
    storage_blob = module_params("storage")["privateDnsZoneIds"]["blob"]
    assert monitoring_blob == storage_blob


def test_function_app_inbound_endpoint_is_optional_and_uses_sites_zone():
    (site_pe,) = pe_modules("modules/functionapp.bicep")
    assert site_pe["raw"]["condition"] == "enablePrivateInbound"
    assert site_pe["body"]["params"]["groupId"] == "sites"
    zone_expr = module_params("functionApp")["sitesPrivateDnsZoneId"]["operator"]["operands"]
    assert zone_expr["condition"] == "enablePrivateInbound"
    assert zone_names([zone_expr["true_value"]]) == ["privatelink.azurewebsites.net"]


def test_sites_depend_on_storage_endpoints_and_dns():
    body = modules(template("main.bicep"))["functionApp"]["body"]
    # Explicit where only names are passed (storage, content share, every Azure OpenAI account: their role
    # assignments exist before the site starts); implicit (through outputs) for the vault and monitoring.
    assert {"dns", "storage", "contentStorage", "openAi", "openAiPool"} <= set(body["dependsOn"])
    params = json.dumps(body["params"])
    for symbol in ("keyVault", "monitoring", "network"):
        assert f'"{symbol}"' in params, symbol
    for symbol in ("storage", "contentStorage", "keyVault", "openAi", "openAiPool", "monitoring"):
        assert "dns" in modules(template("main.bicep"))[symbol]["body"]["dependsOn"], symbol


# --- storage ----------------------------------------------------------------------------------------------


def test_storage_accounts_are_private_and_tls12():
    for relative in ("modules/storage.bicep", "modules/content-storage.bicep"):
        props = one_resource(template(relative), "Microsoft.Storage/storageAccounts")["properties"]
        assert props["publicNetworkAccess"] == "Disabled", relative
        assert props["allowBlobPublicAccess"] is False, relative
        assert props["minimumTlsVersion"] == "TLS1_2", relative
        assert props["supportsHttpsTrafficOnly"] is True, relative
        assert props["networkAcls"]["defaultAction"] == "Deny", relative
        assert props["defaultToOAuthAuthentication"] is True, relative


def test_host_and_gateway_account_is_keyless_and_only_the_content_account_allows_keys():
    """The tables (API keys, policies, quotas, usage) and host state live in an account without shared keys; the
    content share, which Azure Files mounts with a key only, has an account of its own."""
    host = one_resource(template("modules/storage.bicep"), "Microsoft.Storage/storageAccounts")["properties"]
    assert host["allowSharedKeyAccess"] is False
    content = one_resource(template("modules/content-storage.bicep"), "Microsoft.Storage/storageAccounts")
    assert content["properties"]["allowSharedKeyAccess"] is True
    assert set(content["properties"]["encryption"]["services"]) == {"file"}
    assert module_params("storage")["name"] == "storageAccountName"
    assert module_params("contentStorage")["name"] == "contentStorageAccountName"
    names = main_scope()
    assert names.resolve("storageAccountName") != names.resolve("contentStorageAccountName")
    # The Key Vault secret holds the key of the content account, never of the host account.
    assert module_params("keyVault")["storageAccountName"] == "contentStorageAccountName"


def test_content_account_is_file_only():
    tpl = template("modules/content-storage.bicep")
    types = {r["type"] for r in resources(tpl).values() if not r["existing"]}
    data_types = {t for t in types if t.startswith("Microsoft.Storage/")}
    assert data_types == {
        "Microsoft.Storage/storageAccounts",
        "Microsoft.Storage/storageAccounts/fileServices",
        "Microsoft.Storage/storageAccounts/fileServices/shares",
    }
    assert [m["body"]["params"]["groupId"] for m in pe_modules("modules/content-storage.bicep")] == ["file"]
    assert not role_ids(tpl)  # nobody gets data-plane roles on it; only the platform mounts it with the key


def test_content_share_and_gateway_tables_are_created():
    content = template("modules/content-storage.bicep")
    share = one_resource(content, "Microsoft.Storage/storageAccounts/fileServices/shares")
    assert share["name"] == "contentShareName"
    tpl = template("modules/storage.bicep")
    assert not resources_of_type(tpl, "Microsoft.Storage/storageAccounts/fileServices/shares")
    tables = resources_of_type(tpl, "Microsoft.Storage/storageAccounts/tableServices/tables")
    (table,) = tables.values()
    assert table["raw"]["loop_type"]["detail"]["array_name"] == "tableNames"
    assert module_params("storage")["tableNames"] == "gatewayTables"
    # The raw list: resolving would read the string "gatewayPrices" as the parameter of that name.
    assert set(main_scope().tpl["variables"]["gatewayTables"]["value"]) == GATEWAY_TABLES


def test_storage_roles_for_the_identity():
    roles = role_ids(template("modules/storage.bicep"))
    assert set(roles) == {ROLE_BLOB_DATA_OWNER, ROLE_QUEUE_DATA_CONTRIBUTOR, ROLE_TABLE_DATA_CONTRIBUTOR}
    for body in roles.values():
        assert body["scope"] == "storage" and body["properties"]["principalId"] == "principalId"


# --- Key Vault --------------------------------------------------------------------------------------------


def test_key_vault_rbac_purge_protection_private():
    tpl = template("modules/keyvault.bicep")
    props = one_resource(tpl, "Microsoft.KeyVault/vaults")["properties"]
    assert props["enableRbacAuthorization"] is True
    assert props["enablePurgeProtection"] is True
    assert props["enableSoftDelete"] is True
    assert props["publicNetworkAccess"] == "Disabled"
    assert props["networkAcls"]["defaultAction"] == "Deny"
    roles = role_ids(tpl)
    assert set(roles) == {ROLE_KV_SECRETS_USER}
    assert roles[ROLE_KV_SECRETS_USER]["scope"] == "contentSecret"  # one secret, not the vault


# --- Azure OpenAI -------------------------------------------------------------------------------------------


def test_openai_is_private_keyless_with_subdomain_and_role():
    tpl = template("modules/openai.bicep")
    body = one_resource(tpl, "Microsoft.CognitiveServices/accounts")
    assert body["kind"] == "OpenAI"
    props = body["properties"]
    assert props["customSubDomainName"] == "name"
    assert props["publicNetworkAccess"] == "Disabled"
    assert props["disableLocalAuth"] is True
    assert props["networkAcls"]["defaultAction"] == "Deny"
    assert set(role_ids(tpl)) == {ROLE_OPENAI_USER}
    deployments = resources_of_type(tpl, "Microsoft.CognitiveServices/accounts/deployments")
    (dep,) = deployments.values()
    assert dep["raw"]["loop_type"]["detail"]["array_name"] == "deployments"
    assert module_params("openAi")["deployments"] == "openAiDeployments"


def test_allowed_deployments_are_the_model_deployment_names():
    tpl = template("main.bicep")
    assert tpl["variables"]["deploymentNames"]["value"]["loop_type"]["detail"]["array_name"] == "openAiDeployments"
    joined = module_params("functionApp")["allowedDeployments"]["function"]
    assert joined["type"] == "join" and joined["parameters"]["input_array"] == "deploymentNames"


# --- monitoring ---------------------------------------------------------------------------------------------


def test_monitoring_is_private_only_through_ampls():
    tpl = template("modules/monitoring.bicep")
    workspace = one_resource(tpl, "Microsoft.OperationalInsights/workspaces")["properties"]
    insights = one_resource(tpl, "Microsoft.Insights/components")
    for props in (workspace, insights["properties"]):
        assert props["publicNetworkAccessForIngestion"] == "Disabled"
        assert props["publicNetworkAccessForQuery"] == "Disabled"
    assert insights["kind"] == "web"
    assert insights["properties"]["WorkspaceResourceId"]["operator"]["operands"]["operand_1"] == "workspace"
    assert insights["properties"]["DisableLocalAuth"] is True

    ampls = one_resource(tpl, "Microsoft.Insights/privateLinkScopes")
    assert ampls["location"] == "global"
    assert ampls["properties"]["accessModeSettings"] == {
        "ingestionAccessMode": "PrivateOnly",
        "queryAccessMode": "PrivateOnly",
    }
    scoped = resources_of_type(tpl, "Microsoft.Insights/privateLinkScopes/scopedResources")
    linked = {r["body"]["properties"]["linkedResourceId"]["operator"]["operands"]["operand_1"] for r in scoped.values()}
    assert linked == {"workspace", "appInsights"}
    assert set(role_ids(tpl)) == {ROLE_MONITORING_METRICS_PUBLISHER}


# --- function app -------------------------------------------------------------------------------------------


def site_body() -> dict:
    return one_resource(template("modules/functionapp.bicep"), "Microsoft.Web/sites")


def test_plan_is_linux_elastic_premium_ep1():
    tpl = template("modules/functionapp.bicep")
    plan = one_resource(tpl, "Microsoft.Web/serverfarms")
    # EP1 unless planSku says EP2/EP3 (docs/tuning.md, tests/infra/test_tuning.py)
    assert Scope(tpl).resolve(plan["sku"]["name"]) == "EP1" and plan["sku"]["tier"] == "ElasticPremium"
    assert plan["kind"] == "elastic" and plan["properties"]["reserved"] is True


def test_site_hardening_and_vnet_integration():
    body = site_body()
    props = body["properties"]
    assert body["kind"] == "functionapp,linux"
    assert body["identity"]["type"] in ("UserAssigned", "SystemAssigned")
    assert props["httpsOnly"] is True
    assert props["virtualNetworkSubnetId"] == "appSubnetId"
    assert props["keyVaultReferenceIdentity"] == "identityId"
    routing = props["outboundVnetRouting"]
    assert routing["applicationTraffic"] is True and routing["contentShareTraffic"] is True
    config = props["siteConfig"]
    assert config["linuxFxVersion"] == "Python|3.11"
    assert config["minTlsVersion"] in ("1.2", "1.3") and config["scmMinTlsVersion"] in ("1.2", "1.3")
    assert config["ftpsState"] == "Disabled"
    assert config["remoteDebuggingEnabled"] is False
    assert config["healthCheckPath"] == "/api/health"
    assert "cors" not in config
    scope = Scope(template("modules/functionapp.bicep"))
    assert scope.resolve(props["publicNetworkAccess"]) == "Enabled"  # default; Easy Auth guards it
    assert (
        Scope(template("modules/functionapp.bicep"), {"enablePrivateInbound": True}).resolve(
            props["publicNetworkAccess"]
        )
        == "Disabled"
    )


def test_basic_publishing_credentials_are_disabled():
    tpl = template("modules/functionapp.bicep")
    policies = resources_of_type(tpl, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {p["body"]["name"]: p["body"]["properties"]["allow"] for p in policies.values()} == {
        "ftp": False,
        "scm": False,
    }


def test_app_settings_identity_based_storage_and_gateway_settings():
    tpl = template("modules/functionapp.bicep")
    scope = Scope(tpl)
    settings = scope.resolve("deferredSettings")  # what the appsettings resource applies (default mode)
    assert isinstance(settings, dict), settings
    assert "AzureWebJobsStorage" not in settings  # no connection string for host storage
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    for service in ("blob", "queue", "table"):
        assert settings[f"AzureWebJobsStorage__{service}ServiceUri"].startswith("https://${storageAccountName}.")
    assert settings["WEBSITE_CONTENTAZUREFILECONNECTIONSTRING"].startswith("@Microsoft.KeyVault(SecretUri=")
    assert settings["WEBSITE_CONTENTSHARE"] == "contentShareName"
    assert settings["WEBSITE_CONTENTOVERVNET"] == "1"
    assert settings["WEBSITE_SKIP_CONTENTSHARE_VALIDATION"] == "1"
    expected = {
        "FUNCTIONS_EXTENSION_VERSION": "~4",
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "PYTHON_ENABLE_INIT_INDEXING": "1",
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
        "AZURE_CLIENT_ID": "identityClientId",
        "AZURE_OPENAI_ENDPOINT": "openAiEndpoint",
        "AZURE_OPENAI_API_VERSION": "openAiApiVersion",
        "GATEWAY_ALLOWED_DEPLOYMENTS": "allowedDeployments",
        "GATEWAY_AUTH_TENANT_IDS": "authTenantId",
        "GATEWAY_AUTH_CLIENT_ID": "authClientId",
        "GATEWAY_API_KEYS_ENABLED": "false",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "appInsightsConnectionString",
    }
    for name, value in expected.items():
        assert settings[name] == value, name
    assert settings["GATEWAY_STORAGE_TABLE_ENDPOINT"] == "https://${storageAccountName}.table.${storageSuffix}"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].endswith("Authorization=AAD")
    assert "APPINSIGHTS_INSTRUMENTATIONKEY" not in settings
    # The fallback mode carries the same settings (the loop over baseSettings) plus the plain connection string.
    loop = tpl["variables"]["baseAppSettings"]["value"]["loop_type"]
    assert loop["type"] == "object" and loop["detail"]["object_name"] == "baseSettings"
    fallback = scope.resolve("contentSettingsConnectionString")
    connection = fallback["WEBSITE_CONTENTAZUREFILECONNECTIONSTRING"]
    assert "AccountKey=${contentStorage.listKeys().keys[0].value}" in connection
    assert fallback["WEBSITE_CONTENTSHARE"] == "contentShareName"
    creation = json.dumps(tpl["variables"]["creationAppSettings"]["value"])
    assert '"baseAppSettings"' in creation and "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING" in creation


# --- Easy Auth -------------------------------------------------------------------------------------------------


def auth_body(**overrides) -> dict:
    tpl = template("modules/functionapp.bicep")
    (auth,) = [
        r
        for r in resources_of_type(tpl, "Microsoft.Web/sites/config").values()
        if r["body"]["name"] == "authsettingsV2"
    ]
    return Scope(tpl, overrides).resolve(auth["body"]["properties"])


def test_easy_auth_requires_authentication_by_default():
    assert template("main.bicep")["parameters"]["enableGatewayApiKeys"]["default"] is False
    assert template("modules/functionapp.bicep")["parameters"]["enableGatewayApiKeys"]["default"] is False
    assert module_params("functionApp")["enableGatewayApiKeys"] == "enableGatewayApiKeys"
    props = auth_body()
    assert props["platform"]["enabled"] is True
    assert props["globalValidation"]["requireAuthentication"] is True
    assert props["globalValidation"]["unauthenticatedClientAction"] == "Return401"
    assert props["globalValidation"]["excludedPaths"] == ["/api/health"]
    assert props["httpSettings"]["requireHttps"] is True


def test_easy_auth_allows_anonymous_only_when_gateway_keys_are_enabled():
    props = auth_body(enableGatewayApiKeys=True)
    assert props["globalValidation"]["unauthenticatedClientAction"] == "AllowAnonymous"
    assert props["globalValidation"]["requireAuthentication"] is False


def test_easy_auth_entra_provider_v2_issuer_and_audiences():
    aad = auth_body()["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True
    assert aad["registration"]["clientId"] == "authClientId"
    issuer = aad["registration"]["openIdIssuer"]
    assert issuer == "${environment().authentication.loginEndpoint}${authTenantId}/v2.0"
    assert aad["validation"]["allowedAudiences"] == ["api://${authClientId}", "authClientId"]
    assert "defaultAuthorizationPolicy" not in aad["validation"]  # never an empty allow-list
    restricted = auth_body(allowedClientApplications=["11111111-1111-1111-1111-111111111111"])
    policy = restricted["identityProviders"]["azureActiveDirectory"]["validation"]["defaultAuthorizationPolicy"]
    assert policy["allowedApplications"] == ["11111111-1111-1111-1111-111111111111"]


# --- deployment wiring --------------------------------------------------------------------------------------------


def test_bicepparam_sets_only_declared_parameters():
    text = (BICEP_DIR / "main.bicepparam").read_text()
    assert re.search(r"^using '\./main\.bicep'", text, re.M)
    declared = set(template("main.bicep")["parameters"])
    assigned = set(re.findall(r"^param\s+(\w+)\s*=", text, re.M))
    assert assigned and assigned <= declared, assigned - declared
    assert "gatewayClientId" in assigned


def test_azure_yaml_points_at_bicep_and_the_function_service():
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load((BICEP_DIR.parent / "azure.yaml").read_text())
    assert doc["infra"] == {"provider": "bicep", "path": "bicep", "module": "main"}
    api = doc["services"]["api"]
    assert api["project"] == "." and api["language"] == "python" and api["host"] == "function"


def test_function_app_carries_the_azd_service_tag():
    tags = site_body()["tags"]["function"]["parameters"]
    added = [{k.strip("'"): v for k, v in t.items()} for t in tags.values() if isinstance(t, dict)]
    assert {"azd-service-name": "api"} in added
