"""What a verified caller may do: its app roles, and the per-caller policy an admin set."""

from __future__ import annotations

from shared.auth.identity import ROLE_USE, Caller
from shared.errors import GatewayError, forbidden
from shared.policy.callers import CallerPolicy, CallerPolicyStore
from shared.protocol.calls import ModelCall
from shared.protocol.operations import Operation
from shared.settings import GuardrailSettings


def require_role(caller: Caller, role: str) -> None:
    if not caller.has_role(role):
        raise forbidden(
            f"This operation needs the '{role}' app role, which the caller does not have.", code="missing_role"
        )


class Authorizer:
    def __init__(self, policies: CallerPolicyStore) -> None:
        self.policies = policies

    async def authorize(self, caller: Caller, call: ModelCall) -> None:
        require_role(caller, ROLE_USE)
        policy = await self.policies.get(caller.id)
        if policy.allowed_deployments is not None and call.deployment not in policy.allowed_deployments:
            raise forbidden(
                f"The deployment '{call.deployment}' is not allowed for this caller.", code="deployment_not_allowed"
            )
        if call.media is not None and not policy.media:
            raise _media_not_allowed(call.operation)

    async def authorize_operation(self, caller: Caller, operation: Operation) -> None:
        """Before the body is read: images and audio for a caller whose policy does not enable them (D89) are refused
        before an upload of up to 50 MB is read and spooled."""
        if not operation.kind.media:
            return
        require_role(caller, ROLE_USE)
        if not (await self.policies.get(caller.id)).media:
            raise _media_not_allowed(operation)


def _media_not_allowed(operation: Operation) -> GatewayError:
    return forbidden(
        f"{operation.name} (images and audio) is not enabled for this caller; an administrator can enable it in the "
        "caller's policy ('media': true).",
        code="media_not_allowed",
    )


def allowed_deployments(policy: CallerPolicy, guardrails: GuardrailSettings) -> frozenset[str] | None:
    """The deployments a caller may use: its policy's allowlist within the gateway's (``GATEWAY_ALLOWED_DEPLOYMENTS``);
    None: every deployment the gateway serves."""
    if policy.allowed_deployments is None:
        return guardrails.allowed_deployments
    if guardrails.allowed_deployments is None:
        return policy.allowed_deployments
    return policy.allowed_deployments & guardrails.allowed_deployments
