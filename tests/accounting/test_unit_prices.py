"""Unit prices: images by size and quality, audio seconds, characters, audio and image tokens at their own rates."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.accounting.prices import PriceError, parse_prices
from shared.protocol.usage import Usage


def test_media_rates_price_each_unit_exactly():
    prices = parse_prices(
        '{"img": {"input": 0, "output": 0, "images": {"1024x1792/hd": 0.12}},'
        ' "stt": {"input": 2.5, "output": 10, "audio_input": 6, "audio_second": 0.0001},'
        ' "tts": {"input": 0, "output": 0, "characters": 15}}'
    )
    hd = Usage(images=3, image_variant="1024x1792/hd")
    assert prices["img"].covers(hd) and prices["img"].cost(hd) == Decimal("0.36")
    assert not prices["img"].covers(Usage(images=1, image_variant="1024x1024/standard"))  # no rate: unpriced
    tokens = Usage(prompt_tokens=40, completion_tokens=7, audio_input_tokens=30)
    assert prices["stt"].cost(tokens) == (10 * Decimal("2.5") + 30 * 6 + 7 * 10) / 1_000_000
    assert prices["stt"].cost(Usage(audio_ms=2125)) == Decimal("0.0002125")
    assert prices["tts"].cost(Usage(characters=12)) == Decimal(12 * 15) / 1_000_000
    assert prices["tts"].usage_nano_usd(Usage(characters=12)) == 180_000


def test_a_price_without_media_rates_keeps_its_shape_and_id():
    [plain] = parse_prices('{"m": {"input": 1, "output": 2}}').values()
    assert plain.to_json() == {"input": "1", "cached_input": "1", "output": "2", "currency": "USD"}
    assert plain.version == "m@seed-" + plain.version.split("seed-")[1] and not plain.has_unit_rates


@pytest.mark.parametrize(
    "entry",
    [
        '{"input": 1, "output": 1, "images": {"big/hd": 1}}',
        '{"input": 1, "output": 1, "images": [1]}',
        '{"input": 1, "output": 1, "audio_second": -1}',
        '{"input": 1, "output": 1, "characters": "15"}',
        '{"input": 1, "output": 1, "per_image": 1}',
    ],
)
def test_malformed_media_rates_are_refused(entry):
    with pytest.raises(PriceError):
        parse_prices(f'{{"m": {entry}}}')
