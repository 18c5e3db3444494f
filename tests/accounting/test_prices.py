"""Prices: exact decimal costs, strict parsing, and versions in force at a time (the table against Azurite)."""

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from shared.accounting.prices import (
    Price,
    PriceBook,
    PriceError,
    PriceVersion,
    money_text,
    parse_prices,
    version_id,
)
from shared.protocol.usage import Usage


def test_cached_prompt_tokens_are_charged_at_the_cached_price_exactly():
    price = parse_prices('{"m": {"input": 2.0, "cached_input": 0.5, "output": 8.0}}')["m"]
    cost = price.cost(Usage(prompt_tokens=1000, completion_tokens=100, cached_tokens=400))
    assert cost == Decimal("0.0022")  # (600 x 2 + 400 x 0.5 + 100 x 8) / 10^6, no float on the way
    assert price.cost_nano_usd(1000, 100, 400) == 2_200_000


def test_money_is_plain_decimal_text():
    price = parse_prices('{"m": {"input": 0.15, "output": 0.6}}')["m"]
    assert money_text(price.cost_of(105, 0)) == "0.00001575"  # not 1.575e-05
    assert money_text(Decimal("0E-12")) == "0"
    assert money_text(Decimal("12.3400")) == "12.34"


def test_cached_input_defaults_to_input_and_the_seed_has_a_version_id():
    price = parse_prices('{"m": {"input": 1, "output": 2}}')["m"]
    assert (price.input, price.cached_input, price.output, price.currency) == (1, 1, 2, "USD")
    assert price.version.startswith("m@seed-")
    assert parse_prices('{"m": {"input": 1, "output": 3}}')["m"].version != price.version


@pytest.mark.parametrize(
    "text",
    [
        "[1]",
        '{"m": {"input": 1}}',
        '{"m": {"input": -1, "output": 1}}',
        '{"m": {"input": "1", "output": 1}}',
        '{"m": {"input": NaN, "output": 1}}',
        '{"m": {"input": 1e999, "output": 1}}',
        '{"m": {"input": 0.0000000001, "output": 1}}',
        '{"m": {"input": 1, "output": 1, "currency": "usd"}}',
        '{"m": {"input": 1, "output": 1, "extra": 1}}',
        '{"a": {"input": 1, "output": 1, "currency": "EUR"}, "b": {"input": 1, "output": 1}}',
        "{nope",
    ],
)
def test_bad_price_lists_are_refused(text):
    with pytest.raises(PriceError):
        parse_prices(text)


def _version(deployment: str, when: datetime, input_price: str) -> PriceVersion:
    vid = version_id(deployment, when)
    return PriceVersion(deployment, when, Price(Decimal(input_price), Decimal(input_price), Decimal("1"), "USD", vid))


async def test_the_version_in_force_at_a_time_and_now(table):
    book = PriceBook(parse_prices('{"m": {"input": 1, "output": 2}}'), table)
    change = datetime(2026, 11, 15, 12, tzinfo=UTC)
    await book.add(_version("m", change, "5"))
    seed = book.at("m", change - timedelta(seconds=1))
    assert seed is not None and seed.input == 1 and "@seed-" in seed.version
    after = book.at("m", change)
    assert after is not None and (after.input, after.version) == (5, "m@2026-11-15T12:00:00Z")
    assert book.current("m") == book["m"] == after  # what quota cost budgets use
    assert book.at("unpriced", change) is None and "unpriced" not in book
    assert book.by_id("m@2026-11-15T12:00:00Z") == after

    other = PriceBook(parse_prices('{"m": {"input": 1, "output": 2}}'), table)  # another instance
    await other.refresh()
    assert [v.id for v in other.versions("m")][1:] == ["m@2026-11-15T12:00:00Z"]


async def test_a_second_currency_is_refused(table):
    book = PriceBook(parse_prices('{"m": {"input": 1, "output": 2}}'), table)
    euro = PriceVersion("m", datetime(2027, 1, 1, tzinfo=UTC), Price(Decimal(1), Decimal(1), Decimal(1), "EUR", "x"))
    with pytest.raises(PriceError):
        await book.add(euro)


async def test_an_idle_instance_prices_its_next_call_with_the_version_in_force_now(table):
    """Versions are announced ahead (PRICE_NOTICE_SECONDS); an instance whose book is older than that re-reads it
    before pricing, instead of pricing with what it read before it went idle."""
    idle = PriceBook(parse_prices('{"m": {"input": 1, "output": 2}}'), table, stale_seconds=0.2)
    await idle.refresh()
    # In force 1-2 s from now (whole seconds): later than the idle book's staleness (0.2 s), as the notice rule asks
    # of real versions (PRICE_NOTICE_SECONDS > STALE_BOOK_SECONDS); a version due sooner could start in between.
    soon = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0) + timedelta(seconds=1)
    admin = PriceBook(parse_prices('{"m": {"input": 1, "output": 2}}'), table)  # another instance adds a version
    await admin.add(_version("m", soon, "7"))
    await asyncio.sleep((soon - datetime.now(UTC)).total_seconds() + 0.05)
    await idle.ensure_current()
    price = idle.at("m", datetime.now(UTC))
    assert price is not None and price.version == f"m@{soon:%Y-%m-%dT%H:%M:%SZ}"


def test_a_batch_is_priced_at_the_version_s_batch_rate_and_found_by_its_id():
    from shared.accounting.prices import DEFAULT_BATCH_MULTIPLIER

    book = PriceBook(
        parse_prices(
            '{"mini": {"input": 0.15, "output": 0.6}, "big": {"input": 2, "output": 8, "batch_multiplier": 0.4}}'
        )
    )
    mini, big = book.current("mini"), book.current("big")
    assert DEFAULT_BATCH_MULTIPLIER == Decimal("0.5")  # Azure Global Batch: 50% less than Global Standard
    batch = book.batch_at("mini", datetime.now(UTC))
    assert (batch.input, batch.output, batch.version) == (Decimal("0.075"), Decimal("0.3"), f"{mini.version}#batch")
    assert batch.cost_of(1_000_000, 1_000_000) == mini.cost_of(1_000_000, 1_000_000) / 2
    assert book.by_id(batch.version) == batch  # finance's exports find the batch rate by the row's price version
    assert book.batch_at("big", datetime.now(UTC)).output == Decimal("3.2")
    assert "batch_multiplier" not in mini.to_json() and big.to_json()["batch_multiplier"] == "0.4"
    assert book.batch_at("unpriced", datetime.now(UTC)) is None
    with pytest.raises(PriceError):
        parse_prices('{"mini": {"input": 1, "output": 1, "batch_multiplier": 1.5}}')
