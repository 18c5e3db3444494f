"""Versioned prices per deployment, to turn token counts into money for the calls admitted while each is in force.

``GATEWAY_PRICES`` is the seed: JSON ``{"<deployment>": {"input": 0.15, "cached_input": 0.075, "output": 0.60,
"currency": "USD"}}`` per million tokens (``cached_input`` defaults to ``input``, ``currency`` to USD), in force
from the beginning of time. An admin adds versions (``POST /api/manage/prices``) to the ``gatewayPrices`` table,
each in force from its ``effective_from`` until the deployment's next version. A call is priced with the version
in force when it was admitted (its cost budget is charged at the same price), and that version's id is stored on its
ledger row, so a later change never re-prices history. Money is :class:`~decimal.Decimal` throughout: a cost is
exact (tokens x price / 10^6), never a float. Deployments without a price are recorded with no cost (``null``),
not with zero.

Batches (``/openai/batches``) are charged at the batch rate: each price entry's figures times its
``batch_multiplier`` (default :data:`DEFAULT_BATCH_MULTIPLIER`, 0.5: Azure OpenAI Global Batch costs 50% less than
Global Standard, docs/decisions.md), a price of its own with the id ``<version>#batch``, so a batch's ledger row names
the rate it was charged at and finance's exports find its unit prices by that id like any other.

:class:`PriceBook` is also a ``Mapping[str, Price]`` of the prices in force *now*, which is what the quota
enforcer's cost budgets need (``book.current(deployment)`` or ``book.get(deployment)``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared.protocol.usage import Usage

PER_TOKENS = 1_000_000
DEFAULT_CURRENCY = "USD"
PRICE_CACHE_SECONDS = 30.0  # a busy instance re-reads the price table this often, in the background
# A new version must be added at least this long before it takes effect, so a book read less than this long ago
# knows every version in force now; an instance whose book is older (idle for a while) re-reads it before pricing.
PRICE_NOTICE_SECONDS = 60
STALE_BOOK_SECONDS = 45.0  # below the notice, for clock differences between instances
MAX_PRICE = Decimal(1_000_000)  # per million tokens: anything above is a typo
MAX_PRICE_DECIMALS = 9
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
_CURRENCY = re.compile(r"[A-Z]{3}")
# Azure OpenAI Global Batch: "50% less cost than global standard" (docs/decisions.md cites Microsoft's page). A price
# entry's ``batch_multiplier`` overrides it (Data Zone batch, a negotiated rate).
DEFAULT_BATCH_MULTIPLIER = Decimal("0.5")
BATCH_SUFFIX = "#batch"  # the id of a version's batch rate: ``gpt-4o-mini@seed-1a2b3c4d#batch``

log = logging.getLogger(__name__)


class PriceError(ValueError):
    pass


def money_text(amount: Decimal) -> str:
    """A money amount as plain decimal text: ``0.00001575``, never ``1.575E-5``."""
    text = format(amount, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


UNIT_RATE_FIELDS = ("audio_input", "audio_output", "image_input", "image_output", "audio_second", "characters")
PRICE_FIELDS = ("input", "cached_input", "output", "currency", "batch_multiplier", *UNIT_RATE_FIELDS, "images")
_VARIANT = re.compile(r"(?:\d{2,5}x\d{2,5}|auto)/[a-z]{2,10}")


@dataclass(frozen=True)
class Price:
    """Prices per million tokens in ``currency``; ``version`` identifies the price version they come from.

    Media rates (docs/finance.md, "Units"), all optional: ``audio_input``/``audio_output``/``image_input``/
    ``image_output`` per million tokens of that kind (default: the ``input``/``output`` rate), ``images`` per image by
    ``size/quality`` (``{"1024x1024/standard": 0.04}``), ``audio_second`` per second of audio, ``characters`` per
    million characters. A call needing a rate its price lacks is unpriced (no cost), never priced at zero.
    """

    input: Decimal
    cached_input: Decimal
    output: Decimal
    currency: str = DEFAULT_CURRENCY
    version: str = ""
    batch_multiplier: Decimal = DEFAULT_BATCH_MULTIPLIER  # the batch rate: these figures times this
    audio_input: Decimal | None = None
    audio_output: Decimal | None = None
    image_input: Decimal | None = None
    image_output: Decimal | None = None
    audio_second: Decimal | None = None
    characters: Decimal | None = None
    images: tuple[tuple[str, Decimal], ...] = ()  # (size/quality, price per image), sorted

    def batch(self) -> Price:
        """The batch rate of this version: every figure times ``batch_multiplier``, id ``<version>#batch``."""
        factor = _dec(self.batch_multiplier)
        return Price(
            _dec(self.input) * factor,
            _dec(self.cached_input) * factor,
            _dec(self.output) * factor,
            self.currency,
            f"{self.version}{BATCH_SUFFIX}",
            Decimal(1),
        )

    def cost_of(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> Decimal:
        """The exact cost: cached prompt tokens at the cached price, the rest of the prompt at the input price."""
        cached = min(cached_tokens, prompt_tokens)
        return (
            (prompt_tokens - cached) * _dec(self.input)
            + cached * _dec(self.cached_input)
            + completion_tokens * _dec(self.output)
        ) / PER_TOKENS

    def image_price(self, variant: str) -> Decimal | None:
        return next((price for name, price in self.images if name == variant), None)

    def covers(self, usage: Usage) -> bool:
        """Whether this price has every rate ``usage`` needs (a per-image, per-second or per-character rate)."""
        return (
            (not usage.images or self.image_price(usage.image_variant) is not None)
            and (not usage.audio_ms or self.audio_second is not None)
            and (not usage.characters or self.characters is not None)
        )

    def cost(self, usage: Usage) -> Decimal:
        """The exact cost of ``usage``: tokens by kind at their rates, plus images, audio seconds and characters (a
        unit without a rate adds nothing: check :meth:`covers` first)."""
        prompt, completion = usage.prompt_tokens, usage.completion_tokens
        audio_in = min(usage.audio_input_tokens, prompt)
        image_in = min(usage.image_input_tokens, prompt - audio_in)
        cached = min(usage.cached_tokens, prompt - audio_in - image_in)
        audio_out = min(usage.audio_output_tokens, completion)
        image_out = min(usage.image_output_tokens, completion - audio_out)
        input_rate, output_rate = _dec(self.input), _dec(self.output)
        tokens = (
            (prompt - audio_in - image_in - cached) * input_rate
            + cached * _dec(self.cached_input)
            + audio_in * _rate(self.audio_input, input_rate)
            + image_in * _rate(self.image_input, input_rate)
            + (completion - audio_out - image_out) * output_rate
            + audio_out * _rate(self.audio_output, output_rate)
            + image_out * _rate(self.image_output, output_rate)
        ) / PER_TOKENS
        units = Decimal(0)
        per_image = self.image_price(usage.image_variant) if usage.images else None
        if per_image is not None:
            units += usage.images * per_image
        if usage.audio_ms and self.audio_second is not None:
            units += usage.audio_ms * self.audio_second / 1000
        if usage.characters and self.characters is not None:
            units += usage.characters * self.characters / PER_TOKENS
        return tokens + units

    def cost_nano_usd(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> int:
        """The cost in whole billionths of the currency, rounded up: exact integers for quota budgets."""
        return math.ceil(self.cost_of(prompt_tokens, completion_tokens, cached_tokens) * 1_000_000_000)

    def usage_nano_usd(self, usage: Usage) -> int:
        """:meth:`cost` in whole billionths of the currency, rounded up (any kind of usage, media included)."""
        return math.ceil(self.cost(usage) * 1_000_000_000)

    @property
    def has_unit_rates(self) -> bool:
        return bool(self.images) or any(getattr(self, name) is not None for name in UNIT_RATE_FIELDS)

    def unit_rates_json(self) -> dict[str, Any]:
        rates: dict[str, Any] = {
            name: money_text(getattr(self, name)) for name in UNIT_RATE_FIELDS if getattr(self, name) is not None
        }
        if self.images:
            rates["images"] = {variant: money_text(price) for variant, price in self.images}
        return rates

    def to_json(self) -> dict[str, Any]:
        # Prices without media rates or a batch multiplier of their own keep their earlier shape (and so their seed
        # version ids).
        figures = {
            "input": money_text(_dec(self.input)),
            "cached_input": money_text(_dec(self.cached_input)),
            "output": money_text(_dec(self.output)),
            "currency": self.currency,
            **self.unit_rates_json(),
        }
        if _dec(self.batch_multiplier) != DEFAULT_BATCH_MULTIPLIER:  # only then: seed ids of older entries stay
            figures["batch_multiplier"] = money_text(_dec(self.batch_multiplier))
        return figures


def _rate(rate: Decimal | None, default: Decimal) -> Decimal:
    return default if rate is None else rate


def _dec(value: Decimal | float | int) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


@dataclass(frozen=True)
class PriceVersion:
    deployment: str
    effective_from: datetime
    price: Price
    created_by: str = ""

    @property
    def id(self) -> str:
        return self.price.version

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "deployment": self.deployment,
            "effective_from": self.effective_from.isoformat().replace("+00:00", "Z"),
            **self.price.to_json(),
            "created_by": self.created_by,
        }


def version_id(deployment: str, effective_from: datetime) -> str:
    return f"{deployment}@{effective_from.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def seed_version_id(deployment: str, price: Price) -> str:
    """The id of a ``GATEWAY_PRICES`` price: a digest of its figures, so a changed seed gets a new id."""
    digest = hashlib.sha256(json.dumps(price.to_json(), sort_keys=True).encode()).hexdigest()[:8]
    return f"{deployment}@seed-{digest}"


def parse_price(entry: object, where: str, *, stored: bool = False) -> Price:
    """One price object (``input``, ``output``, optional ``cached_input``, ``currency``, ``batch_multiplier`` and media
    rates), strictly."""
    if not isinstance(entry, dict) or not {"input", "output"} <= entry.keys():
        raise PriceError(f"needs 'input' and 'output' (per million tokens) for {where}")
    unknown = set(entry) - set(PRICE_FIELDS)
    if unknown:
        raise PriceError(f"has unknown fields {sorted(unknown)} for {where}")
    values = {}
    for name in ("input", "cached_input", "output"):
        raw = entry.get(name, entry["input"] if name == "cached_input" else None)
        values[name] = _parse_amount(raw, f"{where}.{name}", stored)
    currency = entry.get("currency", DEFAULT_CURRENCY)
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise PriceError(f"'currency' must be an ISO 4217 code such as USD for {where}")
    multiplier = DEFAULT_BATCH_MULTIPLIER
    if entry.get("batch_multiplier") is not None:
        multiplier = _parse_amount(entry["batch_multiplier"], f"{where}.batch_multiplier", stored)
        if multiplier > 1:
            raise PriceError(f"{where}.batch_multiplier is a fraction of the standard price, from 0 to 1")
    rates = {
        name: _parse_amount(entry[name], f"{where}.{name}", stored)
        for name in UNIT_RATE_FIELDS
        if entry.get(name) is not None
    }
    images = entry.get("images")
    per_image: list[tuple[str, Decimal]] = []
    if images is not None:
        if not isinstance(images, dict) or len(images) > 64:
            raise PriceError(f"'images' must be an object of at most 64 'size/quality' prices for {where}")
        for variant, amount in images.items():
            if not isinstance(variant, str) or not _VARIANT.fullmatch(variant):
                raise PriceError(f"'images' keys are 'size/quality' such as '1024x1024/hd' for {where}")
            per_image.append((variant, _parse_amount(amount, f"{where}.images.{variant}", stored)))
    return Price(
        values["input"],
        values["cached_input"],
        values["output"],
        currency,
        batch_multiplier=multiplier,
        audio_input=rates.get("audio_input"),
        audio_output=rates.get("audio_output"),
        image_input=rates.get("image_input"),
        image_output=rates.get("image_output"),
        audio_second=rates.get("audio_second"),
        characters=rates.get("characters"),
        images=tuple(sorted(per_image)),
    )


def _parse_amount(raw: object, where: str, stored: bool) -> Decimal:
    """A JSON number (or, as the price table stores them, decimal text)."""
    if (
        isinstance(raw, bool)
        or not isinstance(raw, int | float | Decimal | str)
        or (isinstance(raw, str) and not stored)
    ):
        raise PriceError(f"{where} must be a number, 0 or more")
    try:
        amount = Decimal(str(raw)) if not isinstance(raw, Decimal) else raw
    except InvalidOperation:
        raise PriceError(f"{where} must be a number, 0 or more") from None
    if not amount.is_finite() or not 0 <= amount <= MAX_PRICE:
        raise PriceError(f"{where} must be a finite number from 0 to {MAX_PRICE}")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_PRICE_DECIMALS:
        raise PriceError(f"{where} has more than {MAX_PRICE_DECIMALS} decimal places")
    return amount


def _reject_constant(name: str) -> Any:
    raise PriceError(f"{name} is not a price")


def parse_prices(text: str | None) -> dict[str, Price]:
    """``GATEWAY_PRICES``: numbers are read as decimals (0.1 stays 0.1, not 0.1000000000000000055...)."""
    if not text:
        return {}
    try:
        raw = json.loads(text, parse_float=Decimal, parse_int=Decimal, parse_constant=_reject_constant)
    except PriceError:
        raise
    except ValueError as exc:
        raise PriceError(f"is not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise PriceError('must be a JSON object such as {"gpt-4o-mini": {"input": 0.15, "output": 0.6}}')
    prices = {}
    for deployment, entry in raw.items():
        price = parse_price(entry, repr(deployment))
        prices[deployment] = replace(price, version=seed_version_id(deployment, price))
    currencies = {p.currency for p in prices.values()}
    if len(currencies) > 1:
        raise PriceError(f"uses several currencies ({', '.join(sorted(currencies))}); the gateway bills in one")
    return prices


class PriceBook(Mapping[str, Price]):
    """The seed prices plus the versions in the ``gatewayPrices`` table (re-read at most every 30 s, in the
    background: pricing a call never waits for storage). As a mapping: the prices in force now."""

    def __init__(
        self,
        seed: Mapping[str, Price],
        table: TableClient | None = None,
        cache_seconds: float = PRICE_CACHE_SECONDS,
        stale_seconds: float = STALE_BOOK_SECONDS,
    ) -> None:
        self._seed = dict(seed)
        self._table = table
        self._cache_seconds = cache_seconds
        self._stale_seconds = stale_seconds
        self._versions: dict[str, list[PriceVersion]] = {}
        self._loaded_at = -math.inf  # when a re-read was last started (successful or not)
        self._read_at = -math.inf  # when the last successful re-read started
        self._refreshing: asyncio.Task[None] | None = None
        self._set_versions([])

    # --- lookups ---------------------------------------------------------------------------------------------

    def at(self, deployment: str, when: datetime) -> Price | None:
        """The price in force for ``deployment`` at ``when`` (None: unpriced)."""
        self._refresh_soon()
        found = None
        for version in self._versions.get(deployment, ()):
            if version.effective_from <= when:
                found = version.price
            else:
                break
        return found

    def current(self, deployment: str) -> Price | None:
        return self.at(deployment, datetime.now(UTC))

    def batch_at(self, deployment: str, when: datetime) -> Price | None:
        """The batch rate in force for ``deployment`` at ``when`` (None: unpriced)."""
        price = self.at(deployment, when)
        return price.batch() if price is not None else None

    def by_id(self, version: str) -> Price | None:
        if version.endswith(BATCH_SUFFIX):
            standard = self.by_id(version.removesuffix(BATCH_SUFFIX))
            return standard.batch() if standard is not None else None
        for versions in self._versions.values():
            for candidate in versions:
                if candidate.id == version:
                    return candidate.price
        return None

    def versions(self, deployment: str | None = None) -> list[PriceVersion]:
        return [v for d, vs in sorted(self._versions.items()) if deployment in (None, d) for v in vs]

    @property
    def currency(self) -> str:
        currencies = {v.price.currency for vs in self._versions.values() for v in vs}
        return next(iter(currencies)) if len(currencies) == 1 else DEFAULT_CURRENCY

    def __getitem__(self, deployment: str) -> Price:
        price = self.current(deployment)
        if price is None:
            raise KeyError(deployment)
        return price

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(d for d in self._versions if self.current(d) is not None))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    # --- the table -------------------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Re-read the table's versions now (raises if storage fails; the old versions stay in force)."""
        if self._table is None:
            return
        started = time.monotonic()
        stored = []
        async for entity in self._table.query_entities("PartitionKey eq @p", parameters={"p": "price"}):
            try:
                stored.append(_version_from_entity(entity))
            except (PriceError, KeyError, ValueError):
                log.error("price version %s in the price table is malformed; ignored", entity.get("RowKey"))
        self._set_versions(stored)
        self._loaded_at = time.monotonic()
        self._read_at = started

    async def ensure_current(self) -> None:
        """Before a call is priced: a book read too long ago to know every version in force now (an instance that
        was idle) is re-read first, so a new price takes effect on time on every instance. When storage cannot be
        read, the versions read before stay in force (logged); the call is not refused for it."""
        if self._table is None or time.monotonic() - self._read_at < self._stale_seconds:
            return
        if self._refreshing is None or self._refreshing.done():
            self._loaded_at = time.monotonic()
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh_quietly())
        await asyncio.shield(self._refreshing)

    async def add(self, version: PriceVersion) -> PriceVersion:
        """Store a new version (re-reading the table first, so the one-currency rule sees every version)."""
        if self._table is None:
            raise PriceError("prices are read-only here (no price table)")
        await self.refresh()
        if any(v.price.currency != version.price.currency for vs in self._versions.values() for v in vs):
            raise PriceError(f"the gateway bills in {self.currency}; a version in {version.price.currency} cannot mix")
        await self._table.upsert_entity(_entity(version), mode=UpdateMode.REPLACE)
        await self.refresh()
        return version

    def _set_versions(self, stored: list[PriceVersion]) -> None:
        versions: dict[str, list[PriceVersion]] = {d: [PriceVersion(d, BEGINNING, p)] for d, p in self._seed.items()}
        for version in stored:
            versions.setdefault(version.deployment, []).append(version)
        for history in versions.values():
            history.sort(key=lambda v: v.effective_from)
        self._versions = versions

    def _refresh_soon(self) -> None:
        if self._table is None or time.monotonic() - self._loaded_at < self._cache_seconds:
            return
        if self._refreshing is not None and not self._refreshing.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._loaded_at = time.monotonic()  # one attempt per cache period, even if it fails
        self._refreshing = loop.create_task(self._refresh_quietly())

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:
            log.warning("reading the price table failed (%s); the prices read before stay in force", type(exc).__name__)


def _entity(version: PriceVersion) -> dict[str, Any]:
    price = version.price
    return {
        "PartitionKey": "price",
        "RowKey": version.id,
        "Deployment": version.deployment,
        "EffectiveFrom": version.effective_from,
        "Input": money_text(price.input),
        "CachedInput": money_text(price.cached_input),
        "Output": money_text(price.output),
        "Currency": price.currency,
        "CreatedBy": version.created_by,
        "BatchMultiplier": money_text(_dec(price.batch_multiplier)),
        # Media rates (an additive column: versions stored before it have none).
        **({"UnitRates": json.dumps(price.unit_rates_json(), sort_keys=True)} if price.has_unit_rates else {}),
    }


def _version_from_entity(entity: Mapping[str, Any]) -> PriceVersion:
    deployment = str(entity["Deployment"])
    effective = entity["EffectiveFrom"]
    if not isinstance(effective, datetime):
        raise ValueError("EffectiveFrom is not a time")
    effective = effective.astimezone(UTC)
    price = parse_price(
        {
            "input": entity["Input"],
            "cached_input": entity["CachedInput"],
            "output": entity["Output"],
            "currency": entity["Currency"],
            "batch_multiplier": entity.get("BatchMultiplier"),  # absent on versions stored before batches
            **json.loads(entity.get("UnitRates") or "{}"),
        },
        deployment,
        stored=True,
    )
    price = replace(price, version=version_id(deployment, effective))
    return PriceVersion(deployment, effective, price, str(entity.get("CreatedBy", "")))
