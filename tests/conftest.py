from __future__ import annotations

import pytest

from tests.azurite import Azurite


@pytest.fixture(scope="session")
def azurite():
    """A private in-memory Azurite Table service for this test session."""
    server = Azurite().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def storage_connection_string(azurite) -> str:
    return azurite.connection_string
