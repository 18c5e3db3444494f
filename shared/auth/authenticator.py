"""Who is calling: one decision, in a fixed order, for every request.

1. Easy Auth is on and sent ``X-MS-CLIENT-PRINCIPAL``: the platform already authenticated the caller.
2. A gateway API key: the ``api-key`` header, or ``Authorization: Bearer gwk_...`` (what ``OpenAI(api_key=...)``
   sends).
3. ``Authorization: Bearer <JWT>``: validated in-process — also when Easy Auth is on but let the request through
   without a principal (its "allow anonymous" mode).
4. Local dev mode: no credential → the fixed local developer with every role.
5. Otherwise 401.

When Easy Auth is off, ``X-MS-CLIENT-PRINCIPAL*`` headers are ignored: anyone could have sent them.
A credential that is presented is checked and its failure is final — a bad token never falls through to a
weaker method. The one exception is local dev mode, where SDKs insist on sending *some* key: values that are
neither a ``gwk_`` key nor (with a validator configured) a JWT are placeholders and mean "the local developer".
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from shared.auth.apikeys import KEY_PREFIX, ApiKeyStore
from shared.auth.easyauth import PRINCIPAL_HEADER, caller_from_client_principal
from shared.auth.entra import EntraTokenValidator
from shared.auth.identity import ROLE_ADMIN, ROLE_USAGE_READ, ROLE_USE, Caller
from shared.errors import unauthorized
from shared.hosting import assert_local_dev_allowed

LOCAL_DEVELOPER = Caller(
    id="local/developer",
    name="Local developer",
    tenant="local",
    kind="user",
    roles=frozenset({ROLE_USE, ROLE_USAGE_READ, ROLE_ADMIN}),
    auth_method="local-dev",
)

NO_CREDENTIALS = (
    "No credentials were presented. Send a Microsoft Entra access token for the gateway "
    "(Authorization: Bearer <token>) or a gateway API key (api-key: gwk_...)."
)


class Authenticator:
    def __init__(
        self,
        easy_auth: bool,
        validator: EntraTokenValidator | None,
        key_store: ApiKeyStore | None,
        local_dev: bool,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if local_dev:
            # Settings already refuse this; checking again here keeps the guarantee next to the code it protects.
            assert_local_dev_allowed(os.environ if env is None else env)
        self._easy_auth = easy_auth
        self._validator = validator
        self._key_store = key_store
        self._local_dev = local_dev

    async def authenticate(self, headers: Mapping[str, str]) -> Caller:
        lowered = {name.lower(): value for name, value in headers.items()}

        if self._easy_auth and lowered.get(PRINCIPAL_HEADER):
            return caller_from_client_principal(lowered[PRINCIPAL_HEADER])

        api_key = lowered.get("api-key", "").strip()
        authorization = lowered.get("authorization", "").strip()
        scheme, _, bearer = authorization.partition(" ")
        bearer = bearer.strip()
        if authorization and scheme.lower() != "bearer":
            raise unauthorized("The Authorization header must use the Bearer scheme.")
        if authorization and not bearer:
            raise unauthorized("No bearer token was presented.")

        if bearer.startswith(KEY_PREFIX) or api_key:
            key = bearer if bearer.startswith(KEY_PREFIX) else api_key
            if self._local_dev and not key.startswith(KEY_PREFIX):
                return LOCAL_DEVELOPER  # a placeholder such as AzureOpenAI(api_key="local")
            if self._key_store is None:
                raise unauthorized("Gateway API keys are disabled on this gateway; use a Microsoft Entra token.")
            return await self._key_store.verify(key)

        if bearer:
            if self._validator is not None and (not self._local_dev or bearer.count(".") == 2):
                return await self._validator.validate(bearer)
            if self._local_dev:
                return LOCAL_DEVELOPER
            raise unauthorized(
                "This gateway is not configured to validate Microsoft Entra tokens itself "
                "(GATEWAY_AUTH_TENANT_IDS/GATEWAY_AUTH_CLIENT_ID); use a gateway API key."
            )

        if self._local_dev:
            return LOCAL_DEVELOPER
        raise unauthorized(NO_CREDENTIALS)
