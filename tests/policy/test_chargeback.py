"""Chargeback attributes in the caller policy: strict validation, stored and read back (Azurite)."""

from __future__ import annotations

import pytest

from shared.errors import GatewayError
from shared.policy.callers import CallerPolicy, CallerPolicyStore


async def test_chargeback_attributes_are_stored_and_read_back(table):
    body = {"cost_center": "CC-42", "owner": "ann@contoso.com", "department": "Research", "tags": {"app": "bot"}}
    store = CallerPolicyStore(table, cache_seconds=0)
    await store.put(CallerPolicy.from_request("t/alice", body))
    policy = await store.get("t/alice")
    assert policy.chargeback() == body
    assert policy.to_json()["cost_center"] == "CC-42"
    assert (await store.get("t/nobody")).chargeback() == {"cost_center": "", "owner": "", "department": "", "tags": {}}
    await store.put(CallerPolicy.from_request("t/bob", {"note": "no chargeback"}))
    every = await store.chargeback_all()  # one query for the daily rollup
    assert (
        every["t/alice"].chargeback() == body
        and every["t/bob"].cost_center == ""
        and set(every) == {"t/alice", "t/bob"}
    )


@pytest.mark.parametrize(
    "body, param",
    [
        ({"cost_center": 42}, "cost_center"),
        ({"owner": "a\nb"}, "owner"),
        ({"department": "x" * 201}, "department"),
        ({"tags": ["a"]}, "tags"),
        ({"tags": {"1bad": "x"}}, "tags"),
        ({"tags": {"ok": 1}}, "tags"),
        ({"tags": {"ok": "\x07"}}, "tags.ok"),
        ({"tags": {f"t{i}": "x" for i in range(21)}}, "tags"),
        ({"costcenter": "x"}, "costcenter"),
    ],
)
def test_bad_chargeback_attributes_are_refused(body, param):
    with pytest.raises(GatewayError) as caught:
        CallerPolicy.from_request("t/alice", body)
    assert caught.value.status == 400 and caught.value.param == param
