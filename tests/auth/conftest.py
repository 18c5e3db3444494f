"""Names for the identity tests (the local identity provider lives in tests/identity_provider.py; the ``table``
fixture in tests/conftest.py)."""

from __future__ import annotations

from tests.identity_provider import (  # noqa: F401 (re-exported for the tests in this folder)
    APP_OID,
    CALLING_APP,
    CLIENT_ID,
    OTHER_TENANT,
    TENANT,
    USER_OID,
    LocalIdentityProvider,
    SigningKey,
    v1_issuer,
    v2_issuer,
)

