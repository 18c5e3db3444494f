"""The model facts the gateway caps and charges by (shared.protocol.models) agree with the simulator's families,
and dated model names find their family."""

from __future__ import annotations

import pytest

from shared.local.simulator.deployments import FAMILIES
from shared.protocol.models import is_reasoning_model, model_output


@pytest.mark.parametrize("family", [f for f in FAMILIES.values() if f.kind == "chat"], ids=lambda f: f.name)
def test_every_simulated_chat_family_has_the_same_maximum_output_and_reasoning(family):
    known = model_output(family.name)
    assert known is not None
    assert (known.max_output_tokens, known.reasoning) == (family.max_output_tokens, family.reasoning)


@pytest.mark.parametrize(
    "name, maximum, reasoning",
    [
        ("gpt-4o-mini-2024-07-18", 16_384, False),
        ("GPT-4.1-2025-04-14", 32_768, False),
        ("o4-mini-2025-04-16", 100_000, True),
        ("gpt-5-mini-2025-08-07", 128_000, True),
        ("gpt-35-turbo-0125", 4_096, False),
    ],
)
def test_dated_names_find_their_family(name, maximum, reasoning):
    found = model_output(name)
    assert found is not None and found.max_output_tokens == maximum and is_reasoning_model(name) is reasoning


@pytest.mark.parametrize("name", ["chat", "my-deployment", "", "-", "gpt"])
def test_unknown_names_have_no_maximum(name):
    assert model_output(name) is None and not is_reasoning_model(name)
