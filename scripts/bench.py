"""Every benchmark of the gateway, from one entry point: ``python scripts/bench.py <command> [options]``.

Each command is a module of ``scripts/benchmarks`` with a ``main(argv)``; ``--help`` after a command shows its
options. Without a command, the request-rate matrix runs (``make bench``). Benchmarks measure; nothing here is a
test, and figures are reported as ratios to a baseline measured in the same run (docs/performance.md).

    .venv/bin/python scripts/bench.py                   # the request-rate matrix; writes docs/performance.{json,md}
    .venv/bin/python scripts/bench.py rate --quick      # one round, fewer requests, no peers, writes nothing
    .venv/bin/python scripts/bench.py concurrency --levels 100,1000 --json out.json
    .venv/bin/python scripts/bench.py upload            # a 25 MB transcription upload: gateway vs direct
    .venv/bin/python scripts/bench.py list              # the commands and what each measures
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "scripts" / "benchmarks"

# command -> (module, function); a module's ``main`` unless named otherwise.
COMMANDS: dict[str, tuple[str, str]] = {
    "rate": ("rate", "main"),
    "concurrency": ("concurrency", "main"),
    "upstream": ("concurrency", "upstream_main"),  # internal: the model-like upstream a concurrency run starts
    "relay": ("relay", "main"),
    "compare": ("compare", "main"),
    "failover": ("failover", "main"),
    "inflight": ("inflight", "main"),
    "journal": ("journal", "main"),
    "peers": ("peers", "main"),
    "quotas": ("quotas", "main"),
    "rollup": ("rollup", "main"),
    "storage": ("storage", "main"),
    "telemetry": ("telemetry", "main"),
    "tokenizers": ("tokenizers", "main"),
    "ownership": ("ownership", "main"),
    "upload": ("upload", "main"),
}


def summary(module: str) -> str:
    """The first line of a benchmark module's docstring, read without importing it (some need extra packages)."""
    docstring = ast.get_docstring(ast.parse((BENCHMARKS / f"{module}.py").read_text())) or ""
    return docstring.splitlines()[0] if docstring else ""


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["list"], ["-h"], ["--help"]):
        print(__doc__)
        for command, (module, _) in COMMANDS.items():
            if command != "upstream":
                print(f"  {command:12} {summary(module)}")
        return
    if not argv or argv[0] not in COMMANDS:
        argv.insert(0, "rate")  # make bench: the request-rate matrix, options and all
    module_name, function = COMMANDS[argv[0]]
    sys.path.insert(0, str(ROOT))  # the gateway's packages, the tests' helpers and scripts.benchmarks
    module = importlib.import_module(f"scripts.benchmarks.{module_name}")
    getattr(module, function)(argv[1:])


if __name__ == "__main__":
    main()
