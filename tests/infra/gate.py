"""The Bicep gate used by scripts/check-infra.sh (run with .venv-infra's python).

  python tests/infra/gate.py parse             every .bicep file through checkov's own Bicep parser
  python tests/infra/gate.py checkov REPORT    read checkov's JSON report and fail on failed checks, parsing
                                               errors, or a file/resource checkov should have scanned but did not

checkov exits 0 when a file does not parse (it only lists it under parsing_errors) and never looks inside
`module` references, so both conditions are checked here explicitly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BICEP_DIR = REPO_ROOT / "bicep"


def bicep_files() -> list[Path]:
    return sorted(p.resolve() for p in BICEP_DIR.rglob("*.bicep"))


def rel(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def parse_all() -> int:
    from importlib.metadata import version

    import pycep
    from checkov.bicep.parser import Parser

    files = bicep_files()
    if not files:
        print("parse: no .bicep files under bicep/")
        return 1
    definitions, _, errors = Parser().get_files_definitions(files)
    failed = sorted(set(errors) | {str(f) for f in files if f not in {Path(p).resolve() for p in definitions}})
    print(f"parse: pycep-parser {version('pycep-parser')} (the parser checkov {version('checkov')} uses)")
    for f in files:
        status = "FAIL" if str(f) in failed else "ok"
        print(f"  {status:4} {rel(f)}")
    if failed:
        # Re-raise the parser's error for each failing file, so the message says why.
        for f in failed:
            try:
                pycep.BicepParser().parse(text=Path(f).read_text(encoding="utf-8"))
            except Exception as exc:  # noqa: BLE001 - report any parser error
                print(f"  {rel(Path(f))}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        print(f"parse: {len(files) - len(failed)}/{len(files)} files parsed, {len(failed)} FAILED")
        return 1
    print(f"parse: {len(files)}/{len(files)} files parsed")
    return 0


def checked_types() -> set[str]:
    """Resource types checkov has Bicep checks for (Bicep-native checks plus the reused ARM checks)."""
    import checkov.arm.checks.resource  # noqa: F401 - registers the ARM checks into the Bicep registry
    import checkov.bicep.checks.resource  # noqa: F401
    from checkov.bicep.checks.resource.registry import registry

    return {t.lower() for t in registry.checks}


def expected_scans() -> dict[Path, set[str]]:
    """file -> {"<type>.<symbol>"} of the (non-existing) resources checkov has checks for."""
    from pycep import BicepParser

    types = checked_types()
    expected: dict[Path, set[str]] = {}
    for f in bicep_files():
        try:
            tpl = BicepParser().parse(text=f.read_text(encoding="utf-8"))
        except Exception:  # noqa: BLE001, S112 - unparseable files are reported as parsing errors already
            continue
        for symbol, res in (tpl.get("resources") or {}).items():
            rtype = res["type"].split("@")[0]
            if res.get("existing") or "__" in symbol:  # nested children are reported under the parent's name
                continue
            if rtype.lower() in types:
                expected.setdefault(f, set()).add(f"{rtype}.{symbol}")
    return expected


def read_report(path: Path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8") or "{}")
    if isinstance(data, list):  # several frameworks -> a list of reports
        data = next((d for d in data if d.get("check_type") == "bicep"), {})
    return data


def checkov_gate(report_path: Path) -> int:
    report = read_report(report_path)
    summary = report.get("summary", {})
    results = report.get("results", {})
    passed = results.get("passed_checks", [])
    failed = results.get("failed_checks", [])
    skipped = results.get("skipped_checks", [])
    parsing_errors = results.get("parsing_errors", [])
    problems = []

    print(
        f"checkov {summary.get('checkov_version', '?')} (framework bicep): passed {len(passed)}, "
        f"failed {len(failed)}, skipped {len(skipped)}, parsing errors {len(parsing_errors)}, "
        f"resources {summary.get('resource_count', 0)}"
    )
    if not report:
        problems.append("checkov produced no Bicep report")
    if summary.get("failed", 0) or failed:
        problems.append(f"{len(failed)} failed check(s)")
    if summary.get("parsing_errors", 0) or parsing_errors:
        problems.append(f"{len(parsing_errors) or summary.get('parsing_errors')} file(s) checkov could not parse")

    for c in failed:
        print(f"  FAILED  {c['check_id']:14} {c['file_path'].lstrip('/')}  {c['resource']}  {c['check_name']}")
    for p in parsing_errors:
        print(f"  PARSING ERROR  {p}")
    for c in sorted(skipped, key=lambda c: (c["file_path"], c["check_id"])):
        reason = (c.get("check_result") or {}).get("suppress_comment", "").strip()
        print(f"  skipped {c['check_id']:14} {c['file_path'].lstrip('/')}  {c['resource']}: {reason}")
        if len(reason) < 20:
            problems.append(f"skip of {c['check_id']} on {c['resource']} has no real justification")

    # Coverage: every resource checkov has checks for must show up in its results, file by file.
    scanned: dict[Path, set[str]] = {}
    for c in passed + failed + skipped:
        path = (BICEP_DIR / c["file_path"].lstrip("/")).resolve()
        scanned.setdefault(path, set()).add(c["resource"])
    files = bicep_files()
    unknown = sorted(set(scanned) - set(files))
    if unknown:
        problems.append(f"checkov reported files outside bicep/: {[str(u) for u in unknown]}")
    expected = expected_scans()
    print("coverage (resources with checkov rules -> scanned):")
    for f in files:
        want = expected.get(f, set())
        got = scanned.get(f, set())
        missing = sorted(want - got)
        print(f"  {rel(f)}: {len(want & got)}/{len(want)} scanned" + (f", NOT SCANNED: {missing}" if missing else ""))
        if missing:
            problems.append(f"{rel(f)}: checkov did not scan {missing}")

    if problems:
        print("checkov gate: FAILED - " + "; ".join(problems))
        return 1
    print("checkov gate: ok")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 1 and argv[0] == "parse":
        return parse_all()
    if len(argv) == 2 and argv[0] == "checkov":
        return checkov_gate(Path(argv[1]))
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
