"""Gateway performance benchmark: the same chat calls straight to the simulator (the baseline), through the gateway
and through peer gateways, measured side by side in one run on this machine.

Everything runs on loopback: a private Azurite, the simulator (zero latency), an OpenID/JWKS issuer with real RSA
keys, and the gateway as real processes (``python -m shared.local.devhost``, the handlers Azure runs) configured as
in production: authentication on (local dev auth in one process; Entra tokens validated in-process and gateway API
keys in the other), every quota limit on (none binding), the ledger on (journal + Table Storage), telemetry on with
one call in ten traced (the Azure default). Peer gateways (LiteLLM proxy, Portkey) run when
``scripts/bench.py peers`` can install them, else they are reported as skipped.

The matrix: targets x {dated, v1} x {JSON, streaming} x {1, 16 concurrent}, repeated in ``--rounds`` interleaved
rounds (each round in a rotated order, so the machine's drift falls on every target alike). Reported per cell:
p50/p95/p99 latency, time to first body byte, requests/s, the serving process's CPU per 1,000 requests, and each
process's peak RSS; ratios to direct are taken within a round, then the median over rounds. Cold start: import
time of ``function_app`` and the first call after a gateway process starts.

    .venv/bin/python scripts/bench.py                 # the whole run; writes docs/performance.{json,md}
    .venv/bin/python scripts/bench.py rate --quick        # one round, fewer requests, no peers, writes nothing
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from scripts.benchmarks.common import (
    BODY,
    CLIENT_ID,
    DATED_PATH,
    DEPLOYMENT,
    ROOT,
    TENANT,
    V1_PATH,
    Azurite,
    Bench,
    Cell,
    GatewayProcess,
    LocalIdentityProvider,
    SigningKey,
    Target,
    drive,
    gateway_settings,
    machine,
    peak_rss_mb,
    start_peers,
    start_simulator,
    summarize,
    terminate,
)

MARK_START, MARK_END = "<!-- bench:start -->", "<!-- bench:end -->"


def start_targets(bench: Bench, args: argparse.Namespace) -> tuple[list[Target], dict[str, str], dict[str, str]]:
    azurite = Azurite().start()
    bench.stops.append(azurite.stop)
    sim_proc, sim_url = start_simulator()
    bench.stops.append(lambda: terminate(sim_proc))
    issuer = LocalIdentityProvider({"k1": SigningKey("k1")}).reset().start()
    bench.stops.append(issuer.stop)
    common = gateway_settings(sim_url, azurite.connection_string)
    dev = GatewayProcess({**common, "GATEWAY_LOCAL_DEV_AUTH": "true"}).start()
    bench.stops.append(dev.stop)
    secured = GatewayProcess(
        {
            **common,
            "GATEWAY_AUTH_TENANT_IDS": TENANT,
            "GATEWAY_AUTH_CLIENT_ID": CLIENT_ID,
            "GATEWAY_AUTH_AUTHORITY": issuer.authority,
        }
    ).start()
    bench.stops.append(secured.stop)
    admin = issuer.token(oid="aaaaaaaa-0000-4000-8000-0000000000ad", roles=["Gateway.Admin", "Gateway.Use"])
    created = httpx.post(
        f"{secured.api}/manage/keys", json={"name": "bench"}, headers={"authorization": f"Bearer {admin}"}
    )
    created.raise_for_status()
    apis = {"dated": DATED_PATH, "v1": V1_PATH}
    gateway_apis = {name: "/api" + path for name, path in apis.items()}
    assert dev.proc is not None and secured.proc is not None
    targets = [
        Target("direct", "direct", sim_url, sim_proc.pid, {"authorization": "Bearer bench"}, apis),
        Target("gateway, dev auth", "gateway", dev.base_url, dev.proc.pid, {"authorization": "Bearer b"}, gateway_apis),
        Target(
            "gateway, API key",
            "gateway",
            secured.base_url,
            secured.proc.pid,
            {"api-key": created.json()["key"]},
            gateway_apis,
        ),
        Target(
            "gateway, Entra token",
            "gateway",
            secured.base_url,
            secured.proc.pid,
            {"authorization": f"Bearer {issuer.token()}"},
            gateway_apis,
        ),
    ]
    skipped: dict[str, str] = {}
    if args.peers:
        targets += start_peers(bench, sim_url, skipped)
    return targets, skipped, common


def cells(targets: list[Target], concurrencies: tuple[int, ...]) -> list[tuple[Target, Cell]]:
    return [
        (target, Cell(target.name, api, mode, concurrency))
        for target in targets
        for api in target.apis
        for mode in ("json", "stream")
        for concurrency in concurrencies
    ]


def rotated(items: list[Any], by: int) -> Iterator[Any]:
    by %= max(1, len(items))
    return itertools.chain(items[by:], items[:by])


def run_rounds(targets: list[Target], args: argparse.Namespace) -> dict[Cell, list[dict[str, float]]]:
    matrix = cells(targets, (1, args.concurrency))
    results: dict[Cell, list[dict[str, float]]] = {cell: [] for _, cell in matrix}
    for round_ in range(args.rounds):
        started = time.perf_counter()
        for target, cell in rotated(matrix, round_ * 7):
            sample = asyncio.run(drive(target, cell.api, cell.mode == "stream", args.requests, cell.concurrency))
            results[cell].append(summarize(sample))
        print(
            f"round {round_ + 1}/{args.rounds}: {len(matrix)} cells in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    return results


def baseline_of(cell: Cell) -> Cell:
    return Cell("direct", cell.api, cell.mode, cell.concurrency)


def report(results: dict[Cell, list[dict[str, float]]]) -> list[dict[str, Any]]:
    """Medians over rounds, and ratios to direct taken round by round (then the median)."""
    rows = []
    for cell, samples in results.items():
        base = results[baseline_of(cell)]
        row: dict[str, Any] = asdict(cell)
        for metric in samples[0]:
            row[metric] = statistics.median(s[metric] for s in samples)
        row["overhead_p50_ms"] = statistics.median(
            s["p50_ms"] - b["p50_ms"] for s, b in zip(samples, base, strict=True)
        )
        for metric in ("p50_ms", "p99_ms", "ttfb_p50_ms", "rps"):
            row[f"{metric}_x_direct"] = statistics.median(
                s[metric] / b[metric] for s, b in zip(samples, base, strict=True)
            )
        rows.append(row)
    return rows


def headline(rows: list[dict[str, Any]], rss: dict[str, tuple[float, float]]) -> list[tuple[str, str, str]]:
    """The issue's goals, each as (goal, measured, verdict)."""

    def find(target: str, mode: str, concurrency: int, api: str = "v1") -> dict[str, Any] | None:
        for row in rows:
            if (row["target"], row["api"], row["mode"], row["concurrency"]) == (target, api, mode, concurrency):
                return row
        return None

    lines = []
    ours = [r for r in rows if r["target"].startswith("gateway")]
    concurrency = max(r["concurrency"] for r in rows)
    portkey_json1 = find("Portkey gateway", "json", 1)
    portkey_jsonc = find("Portkey gateway", "json", concurrency)
    for row in (r for r in ours if r["api"] == "v1" and r["mode"] == "json" and r["concurrency"] == 1):
        versus = f", Portkey {portkey_json1['overhead_p50_ms']:.2f} ms" if portkey_json1 else ""
        ratio = row["overhead_p50_ms"] / portkey_json1["overhead_p50_ms"] if portkey_json1 else None
        lines.append(
            (
                f"overhead p50, JSON, c=1, {row['target']}",
                f"{row['overhead_p50_ms']:.2f} ms{versus}",
                f"{ratio:.2f}x Portkey (goal < 1, stretch 0.7)" if ratio else "no Portkey in this run",
            )
        )
    for row in (r for r in ours if r["api"] == "v1" and r["mode"] == "json" and r["concurrency"] == concurrency):
        ratio = row["rps"] / portkey_jsonc["rps"] if portkey_jsonc else None
        versus = f", Portkey {portkey_jsonc['rps']:.0f}" if portkey_jsonc else ""
        lines.append(
            (
                f"req/s, JSON, c={concurrency}, {row['target']}",
                f"{row['rps']:.0f}{versus}",
                f"{ratio:.2f}x Portkey (goal > 1, stretch 1.3)" if ratio else "no Portkey in this run",
            )
        )
    for row in (r for r in ours if r["mode"] == "stream" and r["concurrency"] == concurrency):
        lines.append(
            (
                f"stream TTFB p50, c={concurrency}, {row['api']}, {row['target']}",
                f"{row['ttfb_p50_ms']:.2f} ms",
                f"{row['ttfb_p50_ms_x_direct']:.2f}x direct (goal <= 1.5)",
            )
        )
    for name, (peak, now) in rss.items():
        goal = "goal <= 150 MB per worker process" if name.startswith("gateway") else ""
        lines.append((f"peak RSS, {name}", f"{peak:.0f} MB (holding {now:.0f} MB at the end)", goal))
    return lines


# --- cold start ----------------------------------------------------------------------------------------------------


def cold_start(settings: dict[str, str], runs: int) -> dict[str, float]:
    """Import time of function_app (what the Functions worker does at start) and, for a fresh gateway process, the
    time until it answers /api/health and the first model call after that (which builds the services)."""
    dev = {**settings, "GATEWAY_LOCAL_DEV_AUTH": "true"}
    env = {**dev, "PATH": os.environ["PATH"]}
    imports, ready, first_calls = [], [], []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import function_app"], cwd=ROOT, env=env, check=True)
        imports.append(time.perf_counter() - started)
    for _ in range(runs):
        gateway = GatewayProcess(dev)
        started = time.perf_counter()
        gateway.start(poll_seconds=0.005)
        ready.append(time.perf_counter() - started)
        call_started = time.perf_counter()
        response = httpx.post(
            f"{gateway.api}{V1_PATH}",
            json={**BODY, "model": DEPLOYMENT},
            headers={"authorization": "Bearer b"},
            timeout=30,
        )
        first_calls.append(time.perf_counter() - call_started)
        gateway.stop()
        response.raise_for_status()
    return {
        "import_function_app_ms": statistics.median(imports) * 1000,
        "process_start_to_healthy_ms": statistics.median(ready) * 1000,
        "first_model_call_ms": statistics.median(first_calls) * 1000,
    }


# --- output --------------------------------------------------------------------------------------------------------


def markdown(data: dict[str, Any]) -> str:
    c = data["conditions"]
    out = [
        MARK_START,
        f"Run of {data['date']} on {data['machine']['cpu']}, {data['machine']['cores']} cores, Python "
        f"{data['machine']['python']}; every process (load generator, simulator, Azurite, gateways, peers) shares "
        f"those cores. {c['requests']} calls per cell, {c['rounds']} interleaved rounds, medians over rounds; ratios "
        f"to direct are taken within each round. Gateways: {c['gateway']}.",
        "",
        "| goal | measured | verdict |",
        "|---|---|---|",
        *(f"| {goal} | {measured} | {verdict} |" for goal, measured, verdict in data["headline"]),
        "",
        "| target | api | mode | c | p50 ms | p95 ms | p99 ms | TTFB p50 ms | req/s | CPU ms / 1,000 req "
        "| overhead p50 ms | p50 x direct | req/s x direct |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        direct = r["target"] == "direct"
        ratios = (
            ("", "", "")
            if direct
            else (f"{r['overhead_p50_ms']:.2f}", f"{r['p50_ms_x_direct']:.2f}", f"{r['rps_x_direct']:.2f}")
        )
        out.append(
            f"| {r['target']} | {r['api']} | {r['mode']} | {r['concurrency']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['ttfb_p50_ms']:.2f} | {r['rps']:.0f} | {r['cpu_ms_per_1000']:.0f} "
            f"| {ratios[0]} | {ratios[1]} | {ratios[2]} |"
        )
    if data["skipped"]:
        out += ["", *(f"Skipped: {name}: {reason}" for name, reason in data["skipped"].items())]
    if data.get("cold_start"):
        cs = data["cold_start"]
        out += [
            "",
            f"Cold start (median of {c['cold_start_runs']}): `import function_app` "
            f"{cs['import_function_app_ms']:.0f} ms; "
            f"gateway process start to healthy {cs['process_start_to_healthy_ms']:.0f} ms; first model call after that "
            f"{cs['first_model_call_ms']:.0f} ms.",
        ]
    out.append(MARK_END)
    return "\n".join(out)


def write_outputs(data: dict[str, Any], json_path: Path, markdown_path: Path) -> None:
    json_path.write_text(json.dumps(data, indent=1) + "\n")
    table = markdown(data)
    text = markdown_path.read_text() if markdown_path.exists() else f"# Performance\n\n{MARK_START}\n{MARK_END}\n"
    if MARK_START not in text or MARK_END not in text:
        text += f"\n{MARK_START}\n{MARK_END}\n"
    before, rest = text.split(MARK_START, 1)
    after = rest.split(MARK_END, 1)[1]
    markdown_path.write_text(before + table + after)
    print(f"\nwrote {json_path} and the table in {markdown_path}")


def print_table(data: dict[str, Any]) -> None:
    columns = ("p50", "p99", "ttfb", "req/s", "cpu/1k", "x p50", "x rps")
    print(f"\n{'target':22} {'api':5} {'mode':6} {'c':>3} " + " ".join(f"{c:>7}" for c in columns))
    for r in data["rows"]:
        print(
            f"{r['target']:22} {r['api']:5} {r['mode']:6} {r['concurrency']:3d} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} "
            f"{r['ttfb_p50_ms']:7.2f} {r['rps']:7.0f} {r['cpu_ms_per_1000']:7.0f} {r['p50_ms_x_direct']:7.2f} "
            f"{r['rps_x_direct']:7.2f}"
        )
    print()
    for goal, measured, verdict in data["headline"]:
        print(f"{goal:50} {measured:30} {verdict}")
    if data["cold_start"]:
        print(f"cold start: {data['cold_start']}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="bench.py rate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=400, help="calls per cell and round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-peers", dest="peers", action="store_false", help="skip LiteLLM and Portkey")
    parser.add_argument("--cold-start-runs", type=int, default=3)
    parser.add_argument("--only", help="comma-separated words: keep direct and the targets whose name has one")
    parser.add_argument("--quick", action="store_true", help="1 round of 100 calls, no peers, no cold start, no files")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "performance.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "docs" / "performance.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.rounds, args.peers, args.cold_start_runs = 100, 1, False, 0

    with Bench() as bench:
        targets, skipped, settings = start_targets(bench, args)
        if args.only:
            words = args.only.split(",")
            targets = [t for t in targets if t.kind == "direct" or any(w in t.name for w in words)]
        print(f"targets: {', '.join(t.name for t in targets)}; skipped: {skipped or 'none'}", flush=True)
        results = run_rounds(targets, args)
        rss: dict[str, tuple[float, float]] = {}
        for pid, served in itertools.groupby(targets, key=lambda t: t.pid):  # one process may serve several targets
            names = [t.name for t in served]
            label = "simulator (direct)" if names == ["direct"] else " / ".join(names)
            rss[label] = (peak_rss_mb(pid), peak_rss_mb(pid, "VmRSS"))
        cold = cold_start(settings, args.cold_start_runs) if args.cold_start_runs else {}
    rows = report(results)
    data = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "conditions": {
            "requests": args.requests,
            "rounds": args.rounds,
            "concurrency": [1, args.concurrency],
            "cold_start_runs": args.cold_start_runs,
            "gateway": "auth on, quotas on (5 limits, none binding), ledger on (journal + Table Storage on Azurite), "
            "telemetry on (metrics, 1 in 10 calls traced)",
            "upstream": "the project's simulator, zero latency",
        },
        "rows": rows,
        "peak_rss_mb": rss,
        "skipped": skipped,
        "cold_start": cold,
    }
    data["headline"] = headline(rows, rss)
    print_table(data)
    if not args.quick:
        write_outputs(data, args.json, args.markdown)
