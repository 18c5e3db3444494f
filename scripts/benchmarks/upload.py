"""A 25 MB transcription upload relayed through the gateway, against direct: added latency and memory
(``scripts/bench.py upload``).

The gateway reads an upload whole before sending any of it (D82), spooling files to local disk beyond 1 MiB, then
streams it upstream; this measures what that adds per upload and checks that the gateway's resident memory does not
grow by the upload's size (docs/performance.md, "Uploads").

    .venv/bin/python scripts/bench.py upload --rounds 7 --json docs/performance-upload.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from scripts.benchmarks.common import (
    Azurite,
    Bench,
    GatewayProcess,
    gateway_settings,
    machine,
    peak_rss_mb,
    start_simulator,
    terminate,
)
from scripts.benchmarks.rate import rotated

UPLOAD_DEPLOYMENT = "whisper"
UPLOAD_PATH = f"/openai/deployments/{UPLOAD_DEPLOYMENT}/audio/transcriptions?api-version=2025-04-01-preview"


def upload_body(size: int) -> tuple[bytes, str]:
    """A multipart transcription request whose WAV file (16-bit mono silence at 24 kHz) makes the whole body
    ``size`` bytes: what the SDK sends for ``audio.transcriptions.create(file=...)``."""
    boundary = "benchupload0123456789"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="response_format"\r\n\r\njson\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="long.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    data_bytes = size - len(head) - len(tail) - 44
    data_bytes -= data_bytes % 2
    fmt = b"fmt " + (16).to_bytes(4, "little") + bytes.fromhex("01000100c05d000080bb000002001000")
    wav = b"RIFF" + (36 + data_bytes).to_bytes(4, "little") + b"WAVE" + fmt
    wav += b"data" + data_bytes.to_bytes(4, "little") + bytes(data_bytes)
    return head + wav + tail, f"multipart/form-data; boundary={boundary}"


async def _upload_once(url: str, headers: dict[str, str], body: bytes) -> float:
    async with httpx.AsyncClient(timeout=300) as client:
        started = time.perf_counter()
        response = await client.post(url, content=body, headers=headers)
        elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"upload answered {response.status_code}: {response.text[:200]}")
    return elapsed * 1000


def run_upload(args: argparse.Namespace) -> None:
    """Added latency and peak RSS for a large transcription upload through the gateway, against direct. The gateway
    spools the upload (in memory up to 1 MiB, then on local disk) and streams it on: its peak RSS must not grow by
    the upload's size."""
    body, content_type = upload_body(args.size)
    with Bench() as bench:
        azurite = Azurite().start()
        bench.stops.append(azurite.stop)
        sim_proc, sim_url = start_simulator()
        bench.stops.append(lambda: terminate(sim_proc))
        gateway = GatewayProcess(
            {
                **gateway_settings(sim_url, azurite.connection_string),
                "GATEWAY_LOCAL_DEV_AUTH": "true",
                "GATEWAY_PRICES": '{"whisper": {"input": 0, "output": 0, "audio_second": 0.0001}}',
            }
        ).start()
        bench.stops.append(gateway.stop)
        assert gateway.proc is not None
        enabled = httpx.put(f"{gateway.api}/manage/policies/local/developer", json={"media": True})
        enabled.raise_for_status()
        targets = {
            "direct": (f"{sim_url}{UPLOAD_PATH}", {"authorization": "Bearer bench"}),
            "gateway": (f"{gateway.api}{UPLOAD_PATH}", {"api-key": "local"}),
        }
        small, small_type = upload_body(64 * 1024)
        for url, headers in targets.values():  # warm both up (imports, connections, the first ledger write)
            asyncio.run(_upload_once(url, {**headers, "content-type": small_type}, small))
        rss_before = {"gateway": peak_rss_mb(gateway.proc.pid), "simulator": peak_rss_mb(sim_proc.pid)}
        # What the gateway holds before the uploads: holding one whole would lift its peak above this plus its size.
        rss_now = peak_rss_mb(gateway.proc.pid, "VmRSS")
        times: dict[str, list[float]] = {name: [] for name in targets}
        sampled: list[float] = []  # the gateway's resident memory every 2 ms while uploads run (its peak hides it)
        gateway_pid = gateway.proc.pid
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                sampled.append(peak_rss_mb(gateway_pid, "VmRSS"))
                time.sleep(0.002)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        for round_ in range(args.rounds):
            for name in rotated(list(targets), round_):
                url, headers = targets[name]
                times[name].append(asyncio.run(_upload_once(url, {**headers, "content-type": content_type}, body)))
        stop.set()
        sampler.join()
        rss_after = {"gateway": peak_rss_mb(gateway.proc.pid), "simulator": peak_rss_mb(sim_proc.pid)}
    direct, through = statistics.median(times["direct"]), statistics.median(times["gateway"])
    data = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "body_bytes": len(body),
        "rounds": args.rounds,
        "direct_ms": [round(t, 1) for t in times["direct"]],
        "gateway_ms": [round(t, 1) for t in times["gateway"]],
        "direct_p50_ms": round(direct, 1),
        "gateway_p50_ms": round(through, 1),
        "added_p50_ms": round(through - direct, 1),
        "peak_rss_mb_before": {k: round(v, 1) for k, v in rss_before.items()},
        "peak_rss_mb_after": {k: round(v, 1) for k, v in rss_after.items()},
        "gateway_rss_before_uploads_mb": round(rss_now, 1),
        "gateway_peak_rss_growth_mb": round(rss_after["gateway"] - rss_before["gateway"], 1),
        "gateway_peak_over_rss_before_mb": round(rss_after["gateway"] - rss_now, 1),
        "gateway_rss_sampled_max_mb": round(max(sampled), 1),
        "gateway_rss_growth_during_uploads_mb": round(max(sampled) - rss_now, 1),
        "rss_samples": len(sampled),
    }
    print(json.dumps(data, indent=2))
    if args.json:
        args.json.write_text(json.dumps(data, indent=2) + "\n")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.py upload", description=__doc__)
    parser.add_argument("--size", type=int, default=25_000_000, help="bytes of the multipart body")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the results here")
    run_upload(parser.parse_args(argv))
