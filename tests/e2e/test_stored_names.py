"""A name stored before names were cleaned (a lone surrogate, a bidi override, a line break in a caller's name, in
the ledger and in the daily table) never takes a finance view or ``/api/me`` down: every answer is a 200 whose
bytes are valid UTF-8, for the finance user and for the caller. Rows are written straight into Azurite, as an older
gateway would have left them, on days of their own in the past so no other test's range includes them."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, UpdateMode

from shared.accounting.ledger import UsageRecord
from shared.finance.daily import daily_row_key
from shared.storage.tables import API_KEYS_TABLE, DAILY_USAGE_TABLE, USAGE_TABLE

pytestmark = pytest.mark.e2e

LEDGER_DAY = date(2019, 3, 5)  # rebuilt from the ledger
DAILY_DAY = date(2019, 3, 6)  # written straight into the daily table
POISON = "Mallory \ud800\u202e\u2028 \udfff"
CALLER = f"{uuid.uuid4()}/{uuid.uuid4()}"


def _ledger_row() -> dict:
    record = UsageRecord(
        request_id=str(uuid.uuid4()),
        at=datetime.combine(LEDGER_DAY, datetime.min.time(), UTC) + timedelta(hours=9),
        caller_id=CALLER,
        caller_name=POISON,
        tenant=CALLER.split("/")[0],
        auth_method="entra-token",
        key_id=None,
        operation="chat.completions",
        deployment="gpt-4o-mini",
        stream=False,
        status=200,
        outcome="completed",
        prompt_tokens=10,
        completion_tokens=5,
        cached_tokens=0,
        reasoning_tokens=0,
        estimated=False,
        cost_usd=None,
        duration_ms=3,
        shard=0,
    )
    return record.entity()


def _daily_row() -> dict:
    return {
        "PartitionKey": DAILY_DAY.isoformat(),
        "RowKey": daily_row_key(CALLER, "gpt-4o-mini"),
        "Day": DAILY_DAY.isoformat(),
        "Month": DAILY_DAY.strftime("%Y-%m"),
        "CallerId": CALLER,
        "CallerName": POISON,
        "Deployment": "gpt-4o-mini",
        "Requests": 1,
        "PromptTokens": 10,
        "CompletionTokens": 5,
        "CostCenter": "CC\ud800",
        "Owner": "\udc00=cmd",
        "Department": "R&D\u2029",
        "Tags": '{"app": "\\ud800"}',
    }


@pytest.fixture(scope="module")
def poisoned(gateway, storage_connection_string):
    for table, row in ((USAGE_TABLE, _ledger_row()), (DAILY_USAGE_TABLE, _daily_row())):
        with TableClient.from_connection_string(storage_connection_string, table) as client:
            try:
                client.create_table()  # the gateway creates its tables on first use; this may come first
            except ResourceExistsError:
                pass
            client.upsert_entity(row, mode=UpdateMode.REPLACE)
    rebuilt = httpx.post(
        f"{gateway.api}/manage/usage/rebuild", json={"from": str(LEDGER_DAY), "to": str(LEDGER_DAY)}, timeout=30
    )
    assert rebuilt.status_code == 200, rebuilt.text
    return gateway


def _utf8(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.content.decode("utf-8")  # strict: a lone surrogate cannot have been written


@pytest.mark.parametrize("group_by", ["caller,deployment", "caller", "cost_center", "day", "caller,cost_center"])
def test_usage_json_answers_with_the_bad_rows_in_it(poisoned, group_by):
    params = {"from": str(LEDGER_DAY), "to": str(DAILY_DAY), "group_by": group_by}
    body = json.loads(_utf8(httpx.get(f"{poisoned.api}/usage", params=params)))
    assert body["totals"]["requests"] == 2
    if "caller" in group_by:
        assert {row["caller_id"] for row in body["data"]} == {CALLER}
        assert all("\ufffd" in row["caller_name"] for row in body["data"])


@pytest.mark.parametrize("output", ["csv", "focus"])
def test_usage_csv_and_focus_stream_to_the_end(poisoned, output):
    params = {"from": str(LEDGER_DAY), "to": str(DAILY_DAY), "format": output}
    rows = list(csv.reader(io.StringIO(_utf8(httpx.get(f"{poisoned.api}/usage", params=params)))))
    assert len(rows) >= 3  # header, the two days' rows (a FOCUS row per token kind), a totals row for csv
    assert all("\u2028" not in field for row in rows for field in row)  # a record stays one line


def test_budgets_answer_for_the_month_holding_the_bad_rows(poisoned):
    body = json.loads(_utf8(httpx.get(f"{poisoned.api}/usage/budgets", params={"month": "2019-03"})))
    assert [row["caller_id"] for row in body["data"]] == [CALLER]


def test_me_answers_for_a_key_whose_stored_owner_name_is_bad(poisoned, storage_connection_string):
    issued = httpx.post(f"{poisoned.api}/manage/keys", json={"name": "legacy owner", "roles": ["Gateway.Use"]})
    assert issued.status_code == 201, issued.text
    key, key_id = issued.json()["key"], issued.json()["key_id"]
    with TableClient.from_connection_string(storage_connection_string, API_KEYS_TABLE) as keys:
        keys.update_entity({"PartitionKey": key_id, "RowKey": "apikey", "OwnerName": POISON, "Name": POISON})
    me = json.loads(_utf8(httpx.get(f"{poisoned.api}/me", headers={"api-key": key})))
    assert me["name"] == "Mallory \ufffd  \ufffd"  # the override removed, the line separator a space
    listed = json.loads(_utf8(httpx.get(f"{poisoned.api}/manage/keys")))
    assert any(k["key_id"] == key_id for k in listed["data"])
