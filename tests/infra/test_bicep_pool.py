"""The backend pool in Bicep (main.bicep `openAiAccounts`): several Azure OpenAI accounts, each as private and
keyless as the single one, and the `GATEWAY_BACKENDS` app setting the gateway builds its pools from
(docs/backend-pools.md). The default (no accounts) must deploy exactly what it did before pools existed.

`evaluate` below runs the few expression forms main.bicep uses to build the setting (for-loops over arrays,
union, property and index access, string interpolation), so the tests read the JSON the function app would get.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pycep", reason="Bicep structural tests run in .venv-infra (scripts/check-infra.sh)")

from tests.infra.bicep_model import Scope, modules, resources_of_type, template  # noqa: E402
from tests.infra.test_bicep_rules import catalog, run_preflight  # noqa: E402

LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")  # shared/settings/backends.py accepts these labels
BACKEND_FIELDS = {"label", "endpoint", "deployment", "priority", "weight"}
ROLE_OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"
TOKEN = "tok123"

TWO_ACCOUNTS = [
    {"label": "swc-ptu", "location": "swedencentral", "priority": 1, "weight": 3},
    {"label": "frc", "location": "francecentral", "priority": 2},
]


def main() -> dict:
    return template("main.bicep")


def main_modules() -> dict[str, dict]:
    return modules(main())


def unique_string(*parts: str) -> str:
    """Stands in for ARM's uniqueString: deterministic, 13 characters, different for different inputs."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:13]


class Evaluator:
    """Evaluates main.bicep variables for given parameter values (the subset the pool variables use)."""

    def __init__(self, **params: Any) -> None:
        self.tpl = main()
        self.values: dict[str, Any] = {"resourceToken": TOKEN, "location": "westeurope", **params}

    def var(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        params = self.tpl["parameters"]
        if name in params:
            return self.eval(params[name]["default"], {})
        return self.eval(self.tpl["variables"][name]["value"], {})

    def eval(self, expr: Any, local: dict[str, Any]) -> Any:
        if isinstance(expr, str):
            if expr in local:
                return local[expr]
            if "${" in expr:
                return re.sub(r"\$\{([^}]*)\}", lambda m: str(self.inline(m.group(1), local)), expr)
            if expr in self.values or expr in self.tpl["parameters"] or expr in self.tpl["variables"]:
                return self.var(expr)
            return expr
        if isinstance(expr, list):
            return [self.eval(item, local) for item in expr]
        if not isinstance(expr, dict):
            return expr
        if "loop_type" in expr:
            detail = expr["loop_type"]["detail"]
            items = self.eval(detail["array_name"], local)
            out = []
            for index, item in enumerate(items):
                scope = {**local, detail["item_name"]: item}
                if detail.get("index_name"):
                    scope[detail["index_name"]] = index
                out.append(self.eval(expr["config"], scope))
            return out
        if "operator" in expr:
            op, operands = expr["operator"]["type"], expr["operator"]["operands"]
            if op == "property_accessor":
                return self.eval(operands["operand_1"], local)[operands["operand_2"]]
            if op == "index_accessor":
                return self.eval(operands["operand_1"], local)[self.eval(operands["operand_2"], local)]
            if op == "conditional":
                branch = "true_value" if self.eval(operands["condition"], local) else "false_value"
                return self.eval(operands[branch], local)
            raise AssertionError(f"operator {op} not evaluated")
        if "function" in expr:
            fn, args = expr["function"]["type"], list(expr["function"]["parameters"].values())
            values = [self.eval(a, local) for a in args]
            if fn == "empty":
                return len(values[0]) == 0
            if fn == "union":
                merged: dict = {}
                for value in values:
                    merged.update(value)
                return merged
            if fn == "string":
                return json.dumps(values[0], separators=(",", ":"))
            raise AssertionError(f"function {fn} not evaluated")
        return {key.strip("'"): self.eval(value, local) for key, value in expr.items()}

    def inline(self, text: str, local: dict[str, Any]) -> Any:
        """An interpolated expression: identifier, a.b, a[i] or uniqueString(x, y.z)."""
        call = re.fullmatch(r"uniqueString\((.*)\)", text)
        if call:
            return unique_string(*(str(self.inline(part.strip(), local)) for part in call.group(1).split(",")))
        indexed = re.fullmatch(r"(\w+)\[(\w+)\]", text)
        if indexed:
            return self.eval(indexed.group(1), local)[self.eval(indexed.group(2), local)]
        head, *rest = text.split(".")
        value = self.eval(head, local)
        for part in rest:
            value = value[part]
        return value


def gateway_backends(accounts: list[dict]) -> str:
    return Evaluator(openAiAccounts=accounts).var("gatewayBackends")


# --- the default is today's single account -------------------------------------------------------------------


def test_default_deploys_the_single_account_and_no_pool():
    defaults = Evaluator()
    assert main()["parameters"]["openAiAccounts"]["default"] == []
    assert Scope(main()).resolve(main_modules()["openAi"]["raw"]["condition"]) is True
    assert defaults.var("poolAccounts") == []  # the pool loop deploys nothing
    assert defaults.var("gatewayBackends") == ""
    assert defaults.var("openAiEndpoint") == f"https://oai-{TOKEN}.openai.azure.com"
    assert defaults.var("openAiAccountName") == f"oai-{TOKEN}"
    # The single account keeps its name, so an existing deployment updates the account it already has.
    assert main()["variables"]["openAiName"]["value"] == "oai-${resourceToken}"
    assert main_modules()["openAi"]["body"]["params"]["name"] == "openAiName"
    # And the function app gets no GATEWAY_BACKENDS setting at all (not even an empty one).
    functionapp = template("modules/functionapp.bicep")
    assert "GATEWAY_BACKENDS" not in Scope(functionapp).resolve("deferredSettings")
    with_pool = Scope(functionapp, {"gatewayBackends": '{"*":[]}'}).resolve("deferredSettings")
    assert with_pool["GATEWAY_BACKENDS"] == '{"*":[]}'
    assert main_modules()["functionApp"]["body"]["params"]["gatewayBackends"] == "gatewayBackends"


def test_with_accounts_the_single_account_is_not_deployed():
    tpl = main()
    assert Scope(tpl, {"openAiAccounts": TWO_ACCOUNTS}).resolve(main_modules()["openAi"]["raw"]["condition"]) is False
    assert len(Evaluator(openAiAccounts=TWO_ACCOUNTS).var("poolAccounts")) == 2


# --- every pool account is private, keyless, granted to the app, in the VNet's region ----------------------------


def test_every_pool_account_uses_the_hardened_openai_module_with_its_endpoint_in_the_vnets_region():
    pool = main_modules()["openAiPool"]
    single = main_modules()["openAi"]
    assert Path(pool["path"]).name == Path(single["path"]).name == "openai.bicep"
    assert pool["raw"]["loop_type"]["detail"]["array_name"] == "poolAccounts"
    params = pool["body"]["params"]
    network_location = main_modules()["network"]["body"]["params"]["location"]
    assert params["privateEndpointLocation"] == network_location == "location"
    assert params["privateEndpointSubnetId"] == single["body"]["params"]["privateEndpointSubnetId"]
    assert params["privateDnsZoneIds"] == single["body"]["params"]["privateDnsZoneIds"]  # privatelink.openai...
    assert params["principalId"] == single["body"]["params"]["principalId"]  # the function app's identity
    assert params["principalResourceId"] == single["body"]["params"]["principalResourceId"]  # seeds the role guid
    zones = [Scope(main()).resolve(z["function"]["parameters"]["resource_name_1"]) for z in params["privateDnsZoneIds"]]
    assert zones == ["privatelink.openai.azure.com", "privatelink.cognitiveservices.azure.com"]
    assert "dns" in pool["body"]["dependsOn"]

    # Inside the module, each account gets (unconditionally) one endpoint and one OpenAI User role assignment.
    tpl = template("modules/openai.bicep")
    (endpoint,) = [m for m in modules(tpl).values() if Path(m["path"]).name == "private-endpoint.bicep"]
    assert "condition" not in endpoint["raw"] or endpoint["raw"]["condition"] is None
    assert endpoint["body"]["params"]["location"] == "privateEndpointLocation"
    assert endpoint["body"]["params"]["subnetId"] == "privateEndpointSubnetId"
    assert endpoint["body"]["params"]["groupId"] == "account"
    (role,) = resources_of_type(tpl, "Microsoft.Authorization/roleAssignments").values()
    assert not isinstance(role["raw"], dict) or "condition" not in role["raw"]
    assert role["body"]["properties"]["principalId"] == "principalId"
    assert role["body"]["scope"] == "account"
    definition = role["body"]["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
    assert Scope(tpl).resolve(definition) == ROLE_OPENAI_USER


def test_pool_accounts_default_to_the_openai_region_and_deployments():
    evaluator = Evaluator(openAiAccounts=[{"label": "a"}, {"label": "b", "location": "francecentral"}])
    region = Scope(main(), {"location": "westeurope", "openAiLocation": ""}).resolve("openAiRegion")
    first, second = evaluator.var("poolAccounts")
    assert first["location"] == evaluator.eval("openAiRegion", {}) == region == "westeurope"
    assert second["location"] == "francecentral"
    assert (first["priority"], first["weight"]) == (1, 1)
    params = main_modules()["openAiPool"]["body"]["params"]
    assert params["location"]["operator"]["operands"] == {"operand_1": "account", "operand_2": "location"}
    own = [{"name": "gpt-5.4-mini"}]
    for account, expected in (
        (first, main()["parameters"]["openAiDeployments"]["default"]),
        ({"deployments": own}, own),
    ):
        assert evaluator.eval(params["deployments"], {"account": {**first, **account}}) == expected


# --- names and labels ----------------------------------------------------------------------------------------


def test_pool_account_names_come_from_the_label_and_are_computed_in_main():
    names = Evaluator(openAiAccounts=TWO_ACCOUNTS).var("poolAccountNames")
    assert len(set(names)) == 2 and all(n.startswith(f"oai-{TOKEN}-") for n in names)
    # Reordering the entries keeps every account's name (the label seeds it, not the position).
    reordered = Evaluator(openAiAccounts=list(reversed(TWO_ACCOUNTS))).var("poolAccountNames")
    assert reordered == list(reversed(names))
    # Custom subdomain rules: 2-64 alphanumerics and hyphens (the module uses the name as the subdomain).
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9-]{1,62}[a-z0-9]", n) for n in names)
    assert main_modules()["openAiPool"]["body"]["params"]["name"]["operator"]["operands"]["operand_1"] == (
        "poolAccountNames"
    )


def test_at_most_sixteen_accounts_the_gateways_pool_limit():
    decorators = main()["parameters"]["openAiAccounts"]["decorators"]
    assert {"type": "max_length", "argument": 16} in decorators


def test_duplicate_labels_cannot_deploy_because_the_module_name_carries_the_label():
    # ARM refuses a template that defines one resource (here: one nested deployment) twice, before deploying.
    assert main_modules()["openAiPool"]["body"]["name"] == "openai-${account.label}"
    # ...and deployment names allow the label's characters: letters, digits, '.', '_', '-' (at most 64).
    assert len("openai-") + 32 <= 64


# --- GATEWAY_BACKENDS ------------------------------------------------------------------------------------------


def test_gateway_backends_is_one_star_pool_of_every_account():
    value = gateway_backends(TWO_ACCOUNTS)
    names = Evaluator(openAiAccounts=TWO_ACCOUNTS).var("poolAccountNames")
    assert json.loads(value) == {
        "*": [
            {"label": "swc-ptu", "endpoint": f"https://{names[0]}.openai.azure.com", "priority": 1, "weight": 3},
            {"label": "frc", "endpoint": f"https://{names[1]}.openai.azure.com", "priority": 2, "weight": 1},
        ]
    }
    # The function app's AZURE_OPENAI_ENDPOINT and the AZURE_OPENAI_NAME output name the first account.
    evaluator = Evaluator(openAiAccounts=TWO_ACCOUNTS)
    assert evaluator.var("openAiEndpoint") == f"https://{names[0]}.openai.azure.com"
    assert evaluator.var("openAiAccountName") == names[0]


def test_gateway_backends_has_the_shape_the_gateway_accepts():
    """The rules of shared/settings/backends.py, which refuses a malformed value at start-up."""
    value = json.loads(gateway_backends([{"label": f"acct.{i}_x-y"} for i in range(16)]))
    assert set(value) == {"*"}
    members = value["*"]
    assert 1 <= len(members) <= 16
    labels = [m["label"] for m in members]
    assert len(set(labels)) == len(labels)
    for member in members:
        assert set(member) <= BACKEND_FIELDS and {"label", "endpoint"} <= set(member)
        assert LABEL.fullmatch(member["label"])
        assert re.fullmatch(r"https://[a-z0-9-]+\.openai\.azure\.com", member["endpoint"])
        assert type(member["priority"]) is int and 1 <= member["priority"] <= 100
        assert type(member["weight"]) is int and 1 <= member["weight"] <= 1000


def test_allowed_deployments_stay_the_deployment_names_with_a_pool():
    # Every account serves every name of openAiDeployments (scripts/preflight.sh checks per-account lists).
    assert main_modules()["functionApp"]["body"]["params"]["allowedDeployments"]["function"]["parameters"] == {
        "input_array": "deploymentNames",
        "delimiter": ",",
    }


def test_the_function_app_waits_for_every_account_and_its_role():
    depends = main_modules()["functionApp"]["body"]["dependsOn"]
    assert "openAi" in depends and "openAiPool" in depends


def test_bicepparam_reads_the_pool_from_the_environment():
    text = (Path(__file__).resolve().parents[2] / "bicep" / "main.bicepparam").read_text(encoding="utf-8")
    assert "param openAiAccounts = json(readEnvironmentVariable('AZURE_OPENAI_ACCOUNTS', '[]'))" in text


# --- preflight: a malformed pool fails before anything is deployed ---------------------------------------------

DEFAULT_MODELS = catalog(
    ("gpt-5.4-mini", "2026-03-17", "GenerallyAvailable", ["GlobalStandard"]),
    ("text-embedding-3-small", "1", "GenerallyAvailable", ["GlobalStandard"]),
)


def test_preflight_accepts_a_well_formed_pool(tmp_path):
    result = run_preflight(tmp_path, DEFAULT_MODELS, AZURE_OPENAI_ACCOUNTS=json.dumps(TWO_ACCOUNTS))
    assert result.returncode == 0, result.stderr
    assert "backend pool of 2 account(s): swc-ptu, frc" in result.stdout


def test_preflight_refuses_duplicate_or_bad_labels_ranges_and_missing_deployments(tmp_path):
    accounts = [
        {"label": "swc", "weight": 3},
        {"label": "SWC", "priority": 0},  # same label without case (ARM deployment names ignore case)
        {"label": "-x", "deployments": [{"name": "gpt-5.4-mini"}], "region": "x"},
    ]
    result = run_preflight(tmp_path, DEFAULT_MODELS, AZURE_OPENAI_ACCOUNTS=json.dumps(accounts))
    assert result.returncode == 1
    for message in (
        "[1].label 'SWC' is used twice",
        "[1].priority must be a whole number from 1 to 100",
        "[2] has an unknown field 'region'",
        "[2].label must be 1-32 letters",
        "[2].deployments lacks text-embedding-3-small",
        "nothing was deployed",
    ):
        assert message in result.stderr, message
    assert run_preflight(tmp_path, DEFAULT_MODELS, AZURE_OPENAI_ACCOUNTS="{").returncode == 1


def test_preflight_checks_each_pool_accounts_models_in_its_region(tmp_path):
    accounts = [
        {
            "label": "swc-ptu",
            "location": "swedencentral",
            "deployments": [
                {
                    "name": "gpt-5.4-mini",
                    "model": {"format": "OpenAI", "name": "gpt-5.4-mini", "version": "2026-03-17"},
                    "sku": {"name": "GlobalProvisionedManaged", "capacity": 15},
                },
                {
                    "name": "text-embedding-3-small",
                    "model": {"format": "OpenAI", "name": "text-embedding-3-small", "version": "1"},
                    "sku": {"name": "GlobalStandard", "capacity": 50},
                },
            ],
        },
        {"label": "frc", "location": "francecentral"},
    ]
    result = run_preflight(tmp_path, DEFAULT_MODELS, AZURE_OPENAI_ACCOUNTS=json.dumps(accounts))
    assert result.returncode == 1
    assert "pool account swc-ptu in swedencentral: gpt-5.4-mini 2026-03-17 has no GlobalProvisionedManaged" in (
        result.stderr
    )
    assert "pool account frc (francecentral): gpt-5.4-mini: gpt-5.4-mini 2026-03-17 GlobalStandard offered" in (
        result.stdout
    )
