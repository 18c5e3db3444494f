import pytest

from shared.accounting.prices import Price, PriceError, parse_prices
from shared.protocol.usage import Usage


def test_cached_prompt_tokens_are_charged_at_the_cached_price():
    price = parse_prices('{"m": {"input": 2.0, "cached_input": 0.5, "output": 8.0}}')["m"]
    assert price.cost(Usage(prompt_tokens=1000, completion_tokens=100, cached_tokens=400)) == pytest.approx(
        (600 * 2.0 + 400 * 0.5 + 100 * 8.0) / 1e6
    )


def test_cached_input_defaults_to_input():
    assert parse_prices('{"m": {"input": 1, "output": 2}}')["m"] == Price(1.0, 1.0, 2.0)


@pytest.mark.parametrize(
    "text",
    ["[1]", '{"m": {"input": 1}}', '{"m": {"input": -1, "output": 1}}', '{"m": {"input": "1", "output": 1}}', "{nope"],
)
def test_bad_price_lists_are_refused(text):
    with pytest.raises(PriceError):
        parse_prices(text)
