"""A batch is settled once, whichever instances and requests see it end at the same time (the registry's ETag).

Real parts: Azurite (the ownership registry and the ledger), the simulator over HTTP, two gateway "instances" (each
its own upstream client and ledger writer) racing to settle the same batch.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import httpx
from azure.data.tables.aio import TableServiceClient

from shared.accounting.ledger import UsageLedger
from shared.accounting.prices import PriceBook, parse_prices
from shared.accounting.settlement import Accounting
from shared.settings import GuardrailSettings
from shared.settings.backends import BackendSettings
from shared.settings.sections import UpstreamSettings
from shared.stateful.batches import FilesAndBatches
from shared.stateful.ids import ObjectKind
from shared.stateful.objects import ObjectRegistry, OwnedObject
from shared.upstream.client import simulator_token_provider
from shared.upstream.pool import Upstream

PRICES = '{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}'


def _batch_on_the_simulator(url: str) -> str:
    auth = {"authorization": "Bearer local"}
    line = {"method": "POST", "url": "/chat/completions", "body": {"model": "gpt-4o-mini"}}
    content = "".join(
        json.dumps(
            {
                **line,
                "custom_id": f"t{i}",
                "body": {**line["body"], "messages": [{"role": "user", "content": f"hi {i}"}]},
            }
        )
        + "\n"
        for i in range(3)
    )
    uploaded = httpx.post(
        f"{url}/openai/v1/files",
        headers=auth,
        data={"purpose": "batch"},
        files={"file": ("in.jsonl", content.encode())},
    ).json()
    created = httpx.post(
        f"{url}/openai/v1/batches",
        headers=auth,
        json={"input_file_id": uploaded["id"], "endpoint": "/chat/completions", "completion_window": "24h"},
    ).json()
    return str(created["id"])


def _instance(simulator_url: str, registry: ObjectRegistry, usage_table, prices: PriceBook) -> FilesAndBatches:
    settings = UpstreamSettings(pools={"*": (BackendSettings(label="a", endpoint=simulator_url),)}, timeout_seconds=5)
    upstream = Upstream.from_settings(settings, lambda _: simulator_token_provider())
    ledger = UsageLedger(usage_table, flush_seconds=0.05)
    return FilesAndBatches(upstream, registry, Accounting(ledger, prices), None, GuardrailSettings())  # type: ignore[arg-type]


async def test_two_instances_and_a_retrieve_racing_settle_a_batch_once(
    table, storage_connection_string, simulator, sim
):
    sim.behave(batch_progress="complete")
    batch_id = _batch_on_the_simulator(simulator.url)
    prices = PriceBook(parse_prices(PRICES))
    price = prices.batch_at("gpt-4o-mini", datetime.now(UTC))
    owner = f"tenant-s/{uuid.uuid4()}"
    registry = ObjectRegistry(table)
    await registry.record(
        OwnedObject.new(
            ObjectKind.BATCH,
            batch_id,
            owner,
            "a",
            "gpt-4o-mini",
            settled=False,
            attributes={"price_version": price.version, "reserved_prompt_tokens": 30, "reserved_output_tokens": 300},
        )
    )
    service = TableServiceClient.from_connection_string(storage_connection_string)
    async with service:
        usage = await service.create_table(f"u{uuid.uuid4().hex[:16]}")
        one, two = (_instance(simulator.url, registry, usage, prices) for _ in range(2))
        record = await registry.find(owner, ObjectKind.BATCH, batch_id)
        assert record is not None
        settled = await asyncio.gather(one.settle_on_timer(), two.settle_on_timer(), one.settle_on_timer())
        late = await two.observe(record, {"id": batch_id, "status": "completed"}, "a-late-retrieve")  # stale view
        for instance in (one, two):
            await instance.accounting.ledger.close()
            await instance.upstream.aclose()
        rows = [row async for row in usage.query_entities("CallerId eq @c", parameters={"c": owner})]
        await service.delete_table(usage.table_name)

    assert sum(settled) == 1 and late is False
    assert len(rows) == 1
    [row] = rows
    output = [r for r in sim.requests() if r["path"].endswith("/content")]
    assert output  # the usage came from the output file
    assert (row["Operation"], row["RowKey"], row["Outcome"]) == ("batch", batch_id, "completed")
    assert row["PromptTokens"] > 0 and row["CompletionTokens"] > 0
    assert row["PriceVersion"] == price.version
    assert (await registry.find(owner, ObjectKind.BATCH, batch_id)).settled
    assert batch_id not in {o.id for o in await registry.unsettled(ObjectKind.BATCH)}
