from __future__ import annotations

import pytest

from shared.local.simulator.app import SimulatorRefused, create_app


@pytest.mark.parametrize(
    "env",
    [
        {"WEBSITE_INSTANCE_ID": "abc123"},
        {"WEBSITE_SITE_NAME": "my-gateway", "WEBSITE_OWNER_NAME": "sub+rg"},
    ],
)
def test_the_simulator_refuses_to_run_in_azure(env):
    with pytest.raises(SimulatorRefused, match="refuses to run in Azure"):
        create_app(env)


def test_the_simulator_runs_locally():
    assert create_app({}) is not None
