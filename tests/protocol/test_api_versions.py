"""api-version values: the dated form with ASCII digits only (they go into the upstream URL as they are)."""

from __future__ import annotations

import pytest

from shared.protocol.api_versions import is_api_version


@pytest.mark.parametrize("value", ["2024-10-21", "2025-04-01-preview"])
def test_dated_versions_are_accepted(value):
    assert is_api_version(value)


@pytest.mark.parametrize("value", ["２０２４-10-21", "٢٠٢٤-١٠-٢١", "2024-10-21\n", "2024-10-21&x=1", "v1", ""])
def test_other_digits_and_suffixes_are_refused(value):
    assert not is_api_version(value)
