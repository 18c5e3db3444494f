"""The checks of scripts/preflight.sh and scripts/postprovision.sh that read Azure's answers (docs/deploy.md).

The shell scripts call ``az`` and hand its JSON output to these functions, which decide; each prints one line per
finding ("ok: ...", "warning: ...", "error: ...") and exits 1 when there is an error. Standard library only (it runs
with the system's python3, before any virtual environment exists); unit-tested with recorded ``az`` outputs
(tests/deploy).

    python3 tools/preflight.py models --models-dir DIR --today YYYY-MM-DD < rows
    python3 tools/preflight.py soft-deleted --vaults FILE --accounts FILE --resource-group RG --env-name ENV ...
    python3 tools/preflight.py scm --private-inbound BOOL --ranges CSV [--consent BOOL]
    python3 tools/preflight.py deploy-path --host HOST --private-inbound BOOL --ranges CSV
    python3 tools/preflight.py kv-references --references FILE
    python3 tools/preflight.py deployer-ip
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import socket
import sys
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

# A model whose deployments stop within this window gets a warning: less than a planning cycle to move.
DEPRECATION_WARNING = timedelta(days=183)
CLOSED_STATUSES = ("deprecated", "deprecating", "retired", "legacy")
# Where the deployer's public address is looked up (only with SCM_ALLOW_DEPLOYER_IP=true, the operator's consent;
# DEPLOYER_IP set: that address instead, no lookup).
PUBLIC_IP_URL = "https://api.ipify.org"


@dataclass(frozen=True)
class Finding:
    level: str  # ok | warning | error
    message: str


def ok(message: str) -> Finding:
    return Finding("ok", message)


def warning(message: str) -> Finding:
    return Finding("warning", message)


def error(message: str) -> Finding:
    return Finding("error", message)


# --- models: offered, not closed, dates, quota --------------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    """One model deployment of one account: ``label|region|deployment|model|version|sku|capacity``."""

    label: str
    region: str
    name: str
    model: str
    version: str
    sku: str
    capacity: int

    @classmethod
    def parse(cls, row: str) -> Deployment:
        parts = row.strip().split("|")
        if len(parts) != 7 or not re.fullmatch(r"[0-9]{1,9}", parts[6]):
            raise ValueError(f"bad deployment row {row!r}")
        label, region, name, model, version, sku, capacity = parts
        return cls(label, region, name, model, version, sku, int(capacity))

    @property
    def where(self) -> str:
        return "" if self.label == "default" else f"pool account {self.label} ({self.region}): "


def _date(value: object) -> date | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).date()
    except ValueError:
        return None


def _offered(catalog: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e.get("model", {}) for e in catalog if isinstance(e, dict) and e.get("kind") in ("OpenAI", "AIServices")]


def find_model(
    catalog: list[dict[str, Any]], d: Deployment
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str]:
    """(model, sku) as the region offers them, or a reason why not (the messages preflight has always printed)."""
    same = [m for m in _offered(catalog) if m.get("name") == d.model]
    if not same:
        return None, None, f"model {d.model} is not offered in this region"
    exact = [m for m in same if m.get("version") == d.version]
    if not exact:
        versions = ", ".join(sorted({str(m.get("version", "?")) for m in same}))
        return None, None, f"{d.model} version {d.version} is not offered in this region (offered: {versions})"
    model = exact[0]
    status = str(model.get("lifecycleStatus", ""))
    if status.lower() in CLOSED_STATUSES:
        return (
            None,
            None,
            f"{d.model} {d.version} has lifecycle status {status} (closed to new customers?); pick a current version",
        )
    skus = [s for s in model.get("skus", []) if isinstance(s, dict)]
    sku = next((s for s in skus if s.get("name") == d.sku), None)
    if sku is None:
        offered = ", ".join(sorted({str(s.get("name", "?")) for s in skus})) or "none"
        return None, None, f"{d.model} {d.version} has no {d.sku} deployment type here (offered: {offered})"
    return model, sku, ""


def check_dates(model: dict[str, Any], sku: dict[str, Any], d: Deployment, today: date) -> Finding | None:
    """The earliest of the model version's inference deprecation and the deployment type's deprecation date."""
    dates = {
        "deprecated for inference (deprecation.inference)": _date((model.get("deprecation") or {}).get("inference")),
        f"its {d.sku} deployment type deprecated (skus[].deprecationDate)": _date(sku.get("deprecationDate")),
    }
    known = sorted((when, what) for what, when in dates.items() if when is not None)
    if not known:
        return None
    when, what = known[0]
    subject = f"{d.where}{d.name}: {d.model} {d.version}"
    advice = "pick a newer version (AZURE_OPENAI_*_MODEL / _VERSION) before deploying"
    if when <= today:
        return error(f"{subject}: {what} on {when.isoformat()}, which has passed; {advice}")
    if when - today <= DEPRECATION_WARNING:
        return warning(
            f"{subject}: {what} on {when.isoformat()}, in {(when - today).days} days; plan the move: {advice}"
        )
    return None


def check_quota(
    deployments: Sequence[Deployment],
    usage_names: dict[Deployment, str],
    usages: dict[str, list[dict[str, Any]]],
    deployed: dict[str, list[dict[str, Any]]],
) -> list[Finding]:
    """Capacity asked per region and quota name against what the subscription has free there. Capacity the
    target resource group's accounts already hold under the same quota name counts as free (a redeployment
    replaces it)."""
    findings: list[Finding] = []
    asked: dict[tuple[str, str], int] = {}
    for d in deployments:
        if d in usage_names:
            key = (d.region, usage_names[d])
            asked[key] = asked.get(key, 0) + d.capacity
    for (region, usage_name), capacity in sorted(asked.items()):
        row = next((u for u in usages.get(region, []) if u.get("name", {}).get("value") == usage_name), None)
        if row is None:
            findings.append(
                warning(
                    f"quota {usage_name} in {region} is not reported by az cognitiveservices usage list; not checked"
                )
            )
            continue
        limit, used = float(row.get("limit") or 0), float(row.get("currentValue") or 0)
        ours = sum(
            float((existing.get("sku") or {}).get("capacity") or 0)
            for existing in deployed.get(region, [])
            if existing.get("usageName") == usage_name
        )
        free = limit - used + ours
        if capacity > free:
            findings.append(
                error(
                    f"quota {usage_name} in {region}: {capacity} asked, {free:g} free (limit {limit:g}, in use {used:g}"
                    f"{f', of which {ours:g} by this resource group' if ours else ''}). Lower AZURE_OPENAI_*_CAPACITY, "
                    "pick another region (AZURE_OPENAI_LOCATION) or request more quota (Foundry portal, Quotas)"
                )
            )
        else:
            findings.append(ok(f"quota {usage_name} in {region}: {capacity} asked, {free:g} free"))
    return findings


def check_models(
    deployments: Sequence[Deployment],
    catalogs: dict[str, list[dict[str, Any]]],
    usages: dict[str, list[dict[str, Any]]],
    deployed: dict[str, list[dict[str, Any]]],
    today: date,
) -> list[Finding]:
    findings: list[Finding] = []
    usage_names: dict[Deployment, str] = {}
    for d in deployments:
        model, sku, reason = find_model(catalogs.get(d.region, []), d)
        if model is None or sku is None:
            hint = (
                "Change the account's deployments or location in AZURE_OPENAI_ACCOUNTS"
                if d.label != "default"
                else "Set AZURE_OPENAI_*_MODEL / _VERSION / _SKU (azd env set ...) or AZURE_OPENAI_LOCATION"
            )
            where = f"pool account {d.label} in {d.region}" if d.label != "default" else f"{d.name} in {d.region}"
            findings.append(error(f"{where}: {reason}. {hint}"))
            continue
        status = model.get("lifecycleStatus") or "status n/a"
        findings.append(ok(f"{d.where}{d.name}: {d.model} {d.version} {d.sku} offered ({status})"))
        dated = check_dates(model, sku, d, today)
        if dated:
            findings.append(dated)
        usage_names[d] = str(sku.get("usageName") or f"OpenAI.{d.sku}.{d.model}")
    return findings + check_quota(deployments, usage_names, usages, deployed)


def deployed_with_usage_names(
    existing: Iterable[dict[str, Any]], catalog: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``az cognitiveservices account deployment list`` rows with the quota name their model and SKU count under."""
    rows = []
    for item in existing:
        model = (item.get("properties") or {}).get("model") or {}
        sku_name = (item.get("sku") or {}).get("name", "")
        usage = f"OpenAI.{sku_name}.{model.get('name', '')}"
        for offered in _offered(catalog):
            if offered.get("name") == model.get("name") and offered.get("version") == model.get("version"):
                for sku in offered.get("skus", []):
                    if isinstance(sku, dict) and sku.get("name") == sku_name and sku.get("usageName"):
                        usage = str(sku["usageName"])
        rows.append({**item, "usageName": usage})
    return rows


# --- soft-deleted Key Vaults and Azure OpenAI accounts --------------------------------------------------------------


def _resource_group_of(resource_id: str) -> str:
    found = re.search(r"/resourceGroups/([^/]+)/", resource_id or "", flags=re.IGNORECASE)
    return found.group(1).lower() if found else ""


def check_soft_deleted(
    vaults: list[dict[str, Any]],
    accounts: list[dict[str, Any]],
    resource_group: str,
    env_name: str,
    vault_names: Iterable[str] = (),
    account_names: Iterable[str] = (),
) -> list[Finding]:
    """A soft-deleted vault or account that the deployment would collide with: one of the names the environment
    deployed before (its outputs), or one deleted from the target resource group and tagged with this environment.
    The remedy is printed as commands; the Bicep always deploys in its default mode."""
    rg = resource_group.lower()
    wanted_vaults = {n.lower() for n in vault_names if n}
    wanted_accounts = {n.lower() for n in account_names if n}
    salt = "or deploy under new names: azd env set RESOURCE_NAME_SALT <anything new> (RESOURCE_NAME_SALT for deploy.sh)"
    findings: list[Finding] = []

    def ours(name: str, item_rg: str, tags: object, wanted: set[str]) -> bool:
        tagged = isinstance(tags, dict) and tags.get("azd-env-name") == env_name
        return name.lower() in wanted or (bool(rg) and item_rg == rg and tagged)

    for vault in vaults:
        props = vault.get("properties") or {}
        name = str(vault.get("name", ""))
        if not ours(name, _resource_group_of(str(props.get("vaultId", ""))), props.get("tags"), wanted_vaults):
            continue
        location = props.get("location", "<region>")
        purge = (
            f"purge protection keeps it until {props.get('scheduledPurgeDate', 'its scheduled purge date')} (no purge)"
            if props.get("purgeProtectionEnabled")
            else f"or free the name: az keyvault purge --name {name} --location {location}"
        )
        findings.append(
            error(
                f"Key Vault {name} is soft-deleted (deleted {props.get('deletionDate', '?')}). Recover it, then run "
                f"again: az keyvault recover --name {name} (its resource group {resource_group or '<rg>'} must exist); "
                f"{purge}; {salt}"
            )
        )
    for account in accounts:
        name = str(account.get("name", ""))
        account_id = str(account.get("id", ""))
        tags = account.get("tags") or (account.get("properties") or {}).get("tags")
        if not ours(name, _resource_group_of(account_id), tags, wanted_accounts):
            continue
        location = account.get("location") or "<region>"
        group = _resource_group_of(account_id) or resource_group or "<rg>"
        findings.append(
            error(
                f"Azure OpenAI account {name} is soft-deleted (kept 48 hours after deletion). Recover it, then run "
                "again: "
                f"az cognitiveservices account recover --location {location} --resource-group {group} --name {name}; "
                f"or free the name: az cognitiveservices account purge --location {location} --resource-group {group} "
                f"--name {name}; {salt}"
            )
        )
    if not findings:
        findings.append(ok("no soft-deleted Key Vault or Azure OpenAI account in the way"))
    return findings


# --- the deploy path (SCM site) ------------------------------------------------------------------------------------


def parse_ranges(text: str) -> tuple[list[ipaddress.IPv4Network], list[str]]:
    networks, bad = [], []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            network = ipaddress.ip_network(item, strict=True)
        except ValueError:
            bad.append(item)
            continue
        if not isinstance(network, ipaddress.IPv4Network) or "/" not in item:
            bad.append(item)
        else:
            networks.append(network)
    return networks, bad


def check_scm(private_inbound: bool, ranges: str, consent: bool) -> list[Finding]:
    """Before provisioning: will the code deployment (the SCM site) be reachable from somewhere?"""
    networks, bad = parse_ranges(ranges)
    if bad:
        return [error(f"SCM_ALLOWED_IP_RANGES has entries that are not IPv4 CIDRs (a.b.c.d/n): {', '.join(bad)}")]
    if any(n.prefixlen == 0 for n in networks):
        return [error("SCM_ALLOWED_IP_RANGES must not open the deployment site to every address (0.0.0.0/0)")]
    if private_inbound:
        return [
            ok(
                "private inbound: the code deployment goes through the app's private endpoint, so run `azd deploy` "
                "(or scripts/deploy.sh --skip-infra) from inside the VNet: the jumpbox or a build agent there "
                "(docs/deploy.md); the predeploy check stops elsewhere"
            )
        ]
    if networks:
        return [ok(f"the deployment (SCM) site admits {', '.join(str(n) for n in networks)}")]
    if consent:
        return [Finding("add-deployer-ip", "SCM_ALLOW_DEPLOYER_IP=true: this machine's public address is added")]
    return [
        error(
            "the deployment (SCM) site would deny everyone: public inbound with an empty SCM_ALLOWED_IP_RANGES, so "
            "the code deployment after provisioning gets 403. Set SCM_ALLOWED_IP_RANGES to your public address "
            "(azd env set SCM_ALLOWED_IP_RANGES <ip>/32), or SCM_ALLOW_DEPLOYER_IP=true to let preflight add this "
            "machine's address, or deploy from inside the VNet with ENABLE_PRIVATE_INBOUND=true (docs/deploy.md)"
        )
    ]


def check_deploy_path(
    host: str, addresses: Sequence[str], private_inbound: bool, ranges: str, deployer_ip: str = ""
) -> list[Finding]:
    """Before uploading code: does the SCM host resolve the way it must from where this runs?"""
    if not addresses:
        return [error(f"{host} does not resolve from here; deploy from a machine that resolves it (docs/deploy.md)")]
    parsed = [ipaddress.ip_address(a) for a in addresses]
    if private_inbound:
        if all(a.is_private for a in parsed):
            return [
                ok(f"{host} resolves to the private endpoint ({', '.join(addresses)}): deploying from inside the VNet")
            ]
        return [
            error(
                f"{host} resolves to a public address ({', '.join(addresses)}) here: this machine is outside the VNet "
                "and the app has public access disabled, so the upload would fail. Run the deployment from the "
                "jumpbox (ENABLE_JUMPBOX=true) or a build agent in the VNet (docs/deploy.md, Private inbound)"
            )
        ]
    networks, bad = parse_ranges(ranges)
    if bad or not networks:
        return [
            error("SCM_ALLOWED_IP_RANGES is empty or invalid: the deployment (SCM) site admits nobody (run preflight)")
        ]
    if deployer_ip:
        address = ipaddress.ip_address(deployer_ip)
        if not any(address in n for n in networks):
            return [
                error(
                    f"this machine's public address {deployer_ip} is not in SCM_ALLOWED_IP_RANGES "
                    f"({', '.join(str(n) for n in networks)}): the upload would get 403. Add it and provision again"
                )
            ]
    return [ok(f"{host} admits {', '.join(str(n) for n in networks)}")]


def resolve(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})


def deployer_ip(fetch: Callable[[str], str] | None = None) -> str:
    def _fetch(url: str) -> str:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - fixed https URL
            return str(response.read(64).decode("ascii", "replace"))

    text = (fetch or _fetch)(PUBLIC_IP_URL).strip()
    address = ipaddress.ip_address(text)  # ValueError when the answer is not an address
    if not isinstance(address, ipaddress.IPv4Address):
        raise ValueError(f"{text} is not an IPv4 address (SCM access restrictions take IPv4 CIDRs here)")
    return text


# --- Key Vault references after provisioning -----------------------------------------------------------------------


def check_kv_references(answer: dict[str, Any]) -> list[Finding]:
    """``GET .../config/configreferences/appsettings``: every reference must be Resolved before code is deployed."""
    items = answer.get("value") if isinstance(answer, dict) else None
    if not isinstance(items, list):
        return [error("the Key Vault reference status could not be read (no 'value' list in the answer)")]
    if not items:
        return [ok("the app has no Key Vault references")]
    findings = []
    for item in items:
        props = item.get("properties") or {}
        name = item.get("name") or props.get("settingName") or "?"
        name = str(name).rsplit("/", 1)[-1]
        status = str(props.get("status") or "unknown")
        if status == "Resolved":
            findings.append(ok(f"{name}: Key Vault reference resolved"))
        else:
            details = props.get("details") or ""
            findings.append(
                error(
                    f"{name}: Key Vault reference {status}{f' ({details})' if details else ''}. The app would read the "
                    "literal '@Microsoft.KeyVault(...)' text and not start. Usual causes: the identity's role on the "
                    "secret not yet effective (wait minutes, run scripts/postprovision.sh again), the vault's private "
                    "endpoint or DNS zone link missing, keyVaultReferenceIdentity not the user-assigned identity"
                )
            )
    return findings


# --- command line ------------------------------------------------------------------------------------------------


def _load(path: Path) -> Any:
    text = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    return json.loads(text) if text else []


def _bool(text: str) -> bool:
    return text.strip().lower() == "true"


def report(findings: Sequence[Finding], out: Callable[[str], None] = print) -> int:
    for f in findings:
        out(f"{f.level}: {f.message}")
    return 1 if any(f.level == "error" for f in findings) else 0


def main(argv: Sequence[str] | None = None, stdin: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="check", required=True)
    models = sub.add_parser("models", help="deployment rows on stdin: label|region|name|model|version|sku|capacity")
    models.add_argument(
        "--models-dir",
        type=Path,
        required=True,
        help="models.<region>.json, usages.<region>.json, deployed.<region>.json",
    )
    models.add_argument("--today", default=date.today().isoformat())
    deleted = sub.add_parser("soft-deleted")
    deleted.add_argument("--vaults", type=Path, required=True)
    deleted.add_argument("--accounts", type=Path, required=True)
    deleted.add_argument("--resource-group", default="")
    deleted.add_argument("--env-name", default="")
    deleted.add_argument("--vault-name", action="append", default=[])
    deleted.add_argument("--account-name", action="append", default=[])
    scm = sub.add_parser("scm")
    scm.add_argument("--private-inbound", default="false")
    scm.add_argument("--ranges", default="")
    scm.add_argument("--consent", default="false")
    path = sub.add_parser("deploy-path")
    path.add_argument("--host", required=True)
    path.add_argument("--private-inbound", default="false")
    path.add_argument("--ranges", default="")
    path.add_argument("--deployer-ip", default="")
    refs = sub.add_parser("kv-references")
    refs.add_argument("--references", type=Path, required=True)
    sub.add_parser("deployer-ip")
    args = parser.parse_args(argv)

    if args.check == "models":
        rows = [Deployment.parse(line) for line in (stdin if stdin is not None else sys.stdin) if line.strip()]
        regions = {d.region for d in rows}
        catalogs = {r: _load(args.models_dir / f"models.{r}.json") for r in regions}
        usages = {r: _load(args.models_dir / f"usages.{r}.json") for r in regions}
        deployed = {
            r: deployed_with_usage_names(_load(args.models_dir / f"deployed.{r}.json"), catalogs[r]) for r in regions
        }
        return report(check_models(rows, catalogs, usages, deployed, date.fromisoformat(args.today)))
    if args.check == "soft-deleted":
        return report(
            check_soft_deleted(
                _load(args.vaults),
                _load(args.accounts),
                args.resource_group,
                args.env_name,
                args.vault_name,
                args.account_name,
            )
        )
    if args.check == "scm":
        return report(check_scm(_bool(args.private_inbound), args.ranges, _bool(args.consent)))
    if args.check == "deploy-path":
        findings = check_deploy_path(
            args.host, resolve(args.host), _bool(args.private_inbound), args.ranges, args.deployer_ip
        )
        return report(findings)
    if args.check == "kv-references":
        answer = _load(args.references)
        return report(check_kv_references(answer if isinstance(answer, dict) else {}))
    known = os.environ.get("DEPLOYER_IP", "").strip()  # the operator's own answer (e.g. behind a known NAT)
    try:
        print(f"{deployer_ip((lambda url: known) if known else None)}/32")
    except (OSError, ValueError) as exc:
        print(f"error: could not read this machine's public address from {PUBLIC_IP_URL}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
