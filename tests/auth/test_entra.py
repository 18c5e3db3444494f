"""In-process validation of Entra access tokens against a local identity provider over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import pytest
from cryptography.hazmat.primitives import serialization

from shared.auth.entra import EntraTokenValidator
from shared.errors import GatewayError
from tests.azurite import free_port
from tests.identity_provider import (
    APP_OID,
    CALLING_APP,
    CLIENT_ID,
    OTHER_TENANT,
    TENANT,
    USER_OID,
    v2_issuer,
)


class Clock:
    """The validator's monotonic clock, moved by hand to cross cache lifetimes and refresh cooldowns."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def validator(idp, clock) -> EntraTokenValidator:
    return EntraTokenValidator([TENANT], CLIENT_ID, authority=idp.authority, clock=clock)


async def rejection(validator: EntraTokenValidator, token: str) -> str:
    with pytest.raises(GatewayError) as raised:
        await validator.validate(token)
    assert raised.value.status == 401
    assert token not in raised.value.message or not token
    return raised.value.message


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# --- accepted tokens ------------------------------------------------------------------------------------------


async def test_a_v2_user_token_becomes_a_user_caller(validator, idp):
    caller = await validator.validate(idp.token())
    assert caller.id == f"{TENANT}/{USER_OID}"
    assert (caller.name, caller.tenant, caller.kind) == ("Ada Lovelace", TENANT, "user")
    assert caller.roles == {"Gateway.Use"}
    assert caller.auth_method == "entra-token" and caller.key_id is None


async def test_a_v1_token_with_the_api_uri_audience_is_accepted(validator, idp):
    caller = await validator.validate(idp.token(version=1))
    assert caller.id == f"{TENANT}/{USER_OID}"


async def test_an_app_only_token_becomes_an_app_named_by_its_client_id(validator, idp):
    token = idp.token(oid=APP_OID, roles=["Gateway.Use", "Usage.Read"], drop=("scp", "name", "preferred_username"))
    caller = await validator.validate(token)
    assert (caller.id, caller.kind, caller.name) == (f"{TENANT}/{APP_OID}", "app", CALLING_APP)
    assert caller.roles == {"Gateway.Use", "Usage.Read"}


async def test_idtyp_app_marks_an_app_even_without_roles(validator, idp):
    caller = await validator.validate(idp.token(idtyp="app", drop=("scp", "roles")))
    assert caller.kind == "app" and caller.roles == frozenset()


async def test_small_clock_skew_is_tolerated(validator, idp):
    now = int(time.time())
    await validator.validate(idp.token(nbf=now + 30, iat=now + 30))
    await validator.validate(idp.token(exp=now - 30))


# --- attacks and mistakes: each a 401 that says what is wrong ----------------------------------------------------


async def test_alg_none_is_rejected(validator, idp):
    claims = claims_of(idp.token())
    token = (
        f"{b64url(json.dumps({'alg': 'none', 'typ': 'JWT', 'kid': 'k1'}).encode())}."
        f"{b64url(json.dumps(claims).encode())}."
    )
    assert "only RS256" in await rejection(validator, token)


async def test_hs256_signed_with_the_public_key_is_rejected(validator, idp, signing_keys):
    public_pem = (
        signing_keys["k1"]
        .private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    signing_input = (
        f"{b64url(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': 'k1'}).encode())}."
        f"{b64url(json.dumps(claims_of(idp.token())).encode())}"
    )
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    assert "only RS256" in await rejection(validator, f"{signing_input}.{b64url(signature)}")


@pytest.mark.parametrize(
    "audience", ["api://some-other-api", "https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000"]
)
async def test_a_token_for_another_resource_is_rejected_naming_the_scope_to_ask_for(validator, idp, audience):
    message = await rejection(validator, idp.token(aud=audience))
    assert "issued for another resource" in message and f"api://{CLIENT_ID}/.default" in message


@pytest.mark.parametrize("version", [1, 2])
async def test_an_id_token_is_not_an_access_token(validator, idp, version):
    # An ID token for the gateway's own app registration: right audience, issuer and signature, but it names no
    # calling application (no azp/appid) and carries the sign-in's nonce.
    id_token = idp.token(version=version, drop=("azp", "appid", "scp"), aud=CLIENT_ID, nonce="n-0S6_WzA2Mj")
    message = await rejection(validator, id_token)
    assert "not an access token" in message and f"api://{CLIENT_ID}/.default" in message


async def test_an_app_only_access_token_is_still_accepted(validator, idp):
    caller = await validator.validate(idp.token(drop=("scp",), roles=["Gateway.Use"], idtyp="app"))
    assert caller.kind == "app"


async def test_a_token_from_another_issuer_is_rejected(validator, idp):
    # Signed with a real Entra key and tid of an accepted tenant, but minted by another tenant's issuer.
    message = await rejection(validator, idp.token(iss=v2_issuer(OTHER_TENANT)))
    assert message == "The token's issuer is not accepted by this gateway."


async def test_a_token_from_another_tenant_is_rejected(validator, idp):
    message = await rejection(validator, idp.token(tenant=OTHER_TENANT))
    assert message == "The bearer token was issued by a Microsoft Entra tenant this gateway does not accept."
    assert idp.key_fetches(OTHER_TENANT) == 0  # refused before any network traffic


async def test_an_expired_token_is_rejected(validator, idp):
    now = int(time.time())
    message = await rejection(validator, idp.token(iat=now - 7200, nbf=now - 7200, exp=now - 120))
    assert message == "The bearer token has expired."


async def test_a_not_yet_valid_token_is_rejected(validator, idp):
    message = await rejection(validator, idp.token(nbf=int(time.time()) + 600))
    assert message == "The bearer token is not valid yet (its 'nbf' or 'iat' is in the future)."


async def test_a_token_signed_by_an_unpublished_key_is_rejected_after_a_refresh(validator, idp, clock):
    await validator.validate(idp.token())
    clock.advance(61)
    message = await rejection(validator, idp.token("rogue"))
    assert message == "The bearer token is signed with a key that Microsoft Entra ID does not publish for its tenant."
    assert idp.key_fetches() == 2  # the unknown kid did trigger a refresh


async def test_a_tampered_payload_is_rejected(validator, idp):
    header, _, signature = idp.token().split(".")
    elevated = {**claims_of(idp.token()), "roles": ["Gateway.Use", "Gateway.Admin"]}
    token = f"{header}.{b64url(json.dumps(elevated).encode())}.{signature}"
    assert await rejection(validator, token) == "The bearer token's signature is invalid."


async def test_a_missing_token_is_rejected(validator):
    assert await rejection(validator, "") == "No bearer token was presented."


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30", "x" * 20_000])
async def test_a_malformed_token_is_rejected(validator, token):
    assert (await rejection(validator, token)).startswith("The bearer token is malformed")


async def test_a_token_without_kid_is_rejected(validator, idp, signing_keys):
    import jwt

    token = jwt.encode(claims_of(idp.token()), signing_keys["k1"].private, algorithm="RS256")
    assert await rejection(validator, token) == "The bearer token does not name its signing key ('kid')."


async def test_a_token_without_exp_is_rejected(validator, idp):
    assert await rejection(validator, idp.token(drop=("exp",))) == "The bearer token lacks the required 'exp' claim."


async def test_a_token_without_oid_is_rejected(validator, idp):
    message = await rejection(validator, idp.token(drop=("oid",)))
    assert message == "The bearer token has no object id ('oid') claim, so the caller cannot be identified."


# --- signing keys: rotation, caching, refresh limits ----------------------------------------------------------


async def test_a_key_that_appears_after_start_up_is_accepted_after_refresh(validator, idp, clock):
    await validator.validate(idp.token("k1"))
    idp.published = ["k1", "k2"]  # Entra rolls a new key
    clock.advance(61)
    caller = await validator.validate(idp.token("k2"))
    assert caller.id == f"{TENANT}/{USER_OID}"
    assert idp.key_fetches() == 2


async def test_unknown_kids_refresh_at_most_once_per_cooldown(validator, idp, clock):
    await validator.validate(idp.token("k1"))
    idp.published = ["k1", "k2"]
    for _ in range(5):  # within the cooldown: refused without asking Entra again
        await rejection(validator, idp.token("k2"))
    assert idp.key_fetches() == 1
    clock.advance(60)
    await validator.validate(idp.token("k2"))
    assert idp.key_fetches() == 2


async def test_concurrent_first_requests_share_one_refresh(validator, idp):
    idp.delay = 0.2
    callers = await asyncio.gather(*(validator.validate(idp.token()) for _ in range(20)))
    assert {c.id for c in callers} == {f"{TENANT}/{USER_OID}"}
    assert idp.key_fetches() == 1


async def test_fetching_keys_does_not_block_the_event_loop(validator, idp):
    idp.delay = 0.3
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    await validator.validate(idp.token())
    ticker.cancel()
    assert ticks >= 10  # the loop kept running during ~0.6 s of discovery/key fetches


async def test_keys_are_reloaded_after_their_lifetime_and_dropped_keys_stop_working(validator, idp, clock):
    await validator.validate(idp.token("k1"))
    idp.published = ["k2"]  # k1 retired
    clock.advance(24 * 3600 + 1)
    assert "does not publish" in await rejection(validator, idp.token("k1"))
    await validator.validate(idp.token("k2"))


async def test_known_keys_stay_in_use_while_entra_is_unreachable(validator, idp, clock):
    await validator.validate(idp.token())
    idp.available = False
    clock.advance(24 * 3600 + 1)
    caller = await validator.validate(idp.token())
    assert caller.id == f"{TENANT}/{USER_OID}"


async def test_without_any_keys_an_unreachable_entra_is_a_503():
    validator = EntraTokenValidator([TENANT], CLIENT_ID, authority=f"http://127.0.0.1:{free_port()}")
    from tests.identity_provider import SigningKey

    token = SigningKey("k1").sign({"tid": TENANT, "aud": CLIENT_ID})
    with pytest.raises(GatewayError) as raised:
        await validator.validate(token)
    assert raised.value.status == 503 and "Retry" in raised.value.message


@pytest.mark.parametrize("authority", ["http://login.example.com", "ftp://127.0.0.1", "login.microsoftonline.com"])
def test_the_authority_must_be_https_except_on_loopback(authority):
    with pytest.raises(ValueError, match="https"):
        EntraTokenValidator([TENANT], CLIENT_ID, authority=authority)


@pytest.mark.parametrize("header", [{"kid": 123, "alg": "RS256"}, {"kid": ["k1"], "alg": "RS256"}, {"kid": None}])
async def test_a_token_header_of_the_wrong_shape_is_malformed_not_a_crash(validator, idp, header):
    claims = b64url(json.dumps(claims_of(idp.token())).encode())
    token = f"{b64url(json.dumps(header).encode())}.{claims}.{b64url(b'sig')}"
    message = await rejection(validator, token)
    assert "malformed" in message or "does not name its signing key" in message


# --- verified tokens are remembered -------------------------------------------------------------------------


async def test_a_token_is_verified_once_then_remembered(validator, idp, monkeypatch):
    import shared.auth.entra as entra

    decodes = []
    decode = entra.jwt.decode
    monkeypatch.setattr(entra.jwt, "decode", lambda *a, **k: decodes.append(1) or decode(*a, **k))
    token = idp.token()
    first = await validator.validate(token)
    checked = len(decodes)
    assert await validator.validate(token) is first and len(decodes) == checked  # no signature check again
    await validator.validate(idp.token(name="Someone Else"))  # another token is checked on its own
    assert len(decodes) > checked


async def test_a_remembered_token_still_expires_on_time(idp, clock):
    strict = EntraTokenValidator([TENANT], CLIENT_ID, authority=idp.authority, clock=clock, leeway_seconds=0)
    token = idp.token(exp=int(time.time()) + 2)
    await strict.validate(token)
    await asyncio.sleep(max(0.0, claims_of(token)["exp"] - time.time()) + 0.05)
    assert "expired" in await rejection(strict, token)


async def test_a_remembered_token_is_checked_again_after_the_ttl(validator, idp, clock, monkeypatch):
    import shared.auth.entra as entra

    token = idp.token()
    await validator.validate(token)
    decodes = []
    decode = entra.jwt.decode
    monkeypatch.setattr(entra.jwt, "decode", lambda *a, **k: decodes.append(1) or decode(*a, **k))
    clock.advance(entra.VERIFIED_TTL_SECONDS - 1)
    await validator.validate(token)
    assert decodes == []
    clock.advance(2)
    await validator.validate(token)
    assert decodes  # verified again
    idp.published = ["k2"]  # k1 retired; once the keys are reloaded, what it signed is refused, remembered or not
    clock.advance(24 * 3600 + 1)
    assert "does not publish" in await rejection(validator, token)
