"""Authorization on its own: app roles, and the per-caller policy kept in Table Storage (Azurite)."""

from __future__ import annotations

import pytest

from shared.auth.identity import ROLE_USAGE_READ, ROLE_USE, Caller
from shared.errors import GatewayError
from shared.policy.authorization import Authorizer, require_role
from shared.policy.callers import CallerPolicy, CallerPolicyStore
from shared.protocol.calls import ModelCall
from shared.protocol.operations import CHAT

ALICE = Caller("t/alice", "Alice", "t", "user", frozenset({ROLE_USE}))


def call(deployment: str = "gpt-4o-mini") -> ModelCall:
    return ModelCall(CHAT, deployment, "2024-10-21", {}, False, False, 10, None)


async def test_a_caller_without_the_use_role_cannot_call_models(table):
    finance = Caller("t/fin", "Finance", "t", "user", frozenset({ROLE_USAGE_READ}))
    with pytest.raises(GatewayError) as caught:
        await Authorizer(CallerPolicyStore(table)).authorize(finance, call())
    assert (caught.value.status, caught.value.code) == (403, "missing_role")


async def test_without_a_policy_every_gateway_deployment_is_allowed(table):
    await Authorizer(CallerPolicyStore(table)).authorize(ALICE, call("gpt-4.1"))


async def test_a_policy_allowlist_holds_for_its_caller_only(table):
    store = CallerPolicyStore(table)
    await store.put(CallerPolicy("t/alice", frozenset({"gpt-4o-mini"})))
    authorizer = Authorizer(store)
    await authorizer.authorize(ALICE, call("gpt-4o-mini"))
    with pytest.raises(GatewayError) as caught:
        await authorizer.authorize(ALICE, call("gpt-4.1"))
    assert (caught.value.status, caught.value.code) == (403, "deployment_not_allowed")
    bob = Caller("t/bob", "Bob", "t", "user", frozenset({ROLE_USE}))
    await authorizer.authorize(bob, call("gpt-4.1"))


async def test_a_policy_change_reaches_other_instances_within_the_cache_time(table):
    writer, reader = CallerPolicyStore(table), CallerPolicyStore(table, cache_seconds=0)
    assert (await reader.get("t/alice")).allowed_deployments is None
    await writer.put(CallerPolicy("t/alice", frozenset({"gpt-4o-mini"})))
    assert (await reader.get("t/alice")).allowed_deployments == {"gpt-4o-mini"}


def test_require_role_names_the_missing_role():
    with pytest.raises(GatewayError, match="Gateway.Admin"):
        require_role(ALICE, "Gateway.Admin")
