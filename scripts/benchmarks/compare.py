"""Gateways built from several checkouts, side by side in one run: how each optimisation moved the figures.

Each ``--checkout label=path`` starts a gateway process from that directory (a ``git worktree`` of an earlier
commit, say) with the same settings as ``scripts/bench.py`` (local dev auth, quotas, ledger, telemetry on), beside
the simulator direct; the cells (v1 chat, JSON and streaming, c=1 and c=16) run in interleaved rounds and the
ratios to direct are taken within each round. ``label=path+h11`` hides httptools from that gateway, so uvicorn
falls back to h11 as it did before httptools was a dependency.

    git worktree add --detach /tmp/before <commit>
    .venv/bin/python scripts/bench_compare.py --checkout before=/tmp/before+h11 --checkout now=.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import tests.gateway_process as gateway_process
from scripts.benchmarks import common as bench
from scripts.benchmarks import rate
from tests.azurite import Azurite, terminate

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", action="append", required=True, help="label=path[+h11]")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)

    hidden = Path(tempfile.mkdtemp(prefix="no-httptools-")) / "httptools"
    hidden.mkdir()
    (hidden / "__init__.py").write_text('raise ImportError("hidden by bench_compare: uvicorn uses h11")\n')

    azurite = Azurite().start()
    simulator, sim_url = bench.start_simulator()
    gateways = []
    try:
        direct = {"authorization": "Bearer bench"}
        targets = [bench.Target("direct", "direct", sim_url, simulator.pid, direct, {"v1": bench.V1_PATH})]
        for spec in args.checkout:
            label, path = spec.split("=", 1)
            env = {**bench.gateway_settings(sim_url, azurite.connection_string), "GATEWAY_LOCAL_DEV_AUTH": "true"}
            if path.endswith("+h11"):
                path, env["PYTHONPATH"] = path.removesuffix("+h11"), str(hidden.parent)
            gateway_process.ROOT = Path(path).resolve()  # the checkout whose code the process runs
            gateway = gateway_process.GatewayProcess(env).start()
            gateways.append(gateway)
            assert gateway.proc is not None
            dev = {"authorization": "Bearer bench"}
            targets.append(
                bench.Target(label, "gateway", gateway.base_url, gateway.proc.pid, dev, {"v1": "/api" + bench.V1_PATH})
            )
        rows = rate.report(rate.run_rounds(targets, args))
        print(
            "\n| checkout | mode | c | p50 ms | p99 ms | TTFB p50 ms | req/s | CPU ms / 1,000 req | overhead p50 ms "
            "| p50 x direct | req/s x direct |\n|---|---|---|---|---|---|---|---|---|---|---|"
        )
        for r in rows:
            print(
                f"| {r['target']} | {r['mode']} | {r['concurrency']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                f"| {r['ttfb_p50_ms']:.2f} | {r['rps']:.0f} | {r['cpu_ms_per_1000']:.0f} | {r['overhead_p50_ms']:.2f} "
                f"| {r['p50_ms_x_direct']:.2f} | {r['rps_x_direct']:.2f} |"
            )
        print("\npeak RSS: " + ", ".join(f"{t.name} {bench.peak_rss_mb(t.pid):.0f} MB" for t in targets))
    finally:
        for gateway in gateways:
            gateway.stop()
        terminate(simulator)
        azurite.stop()
