"""Detecting Azure, so that local-only modes refuse to run there."""

from __future__ import annotations

import pytest

from shared.hosting import LocalDevRefused, assert_local_dev_allowed, running_in_azure

CORE_TOOLS_LOCALLY = {  # what `func start` and a developer shell typically have
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "FUNCTIONS_CORETOOLS_ENVIRONMENT": "true",
    "AZURE_FUNCTIONS_ENVIRONMENT": "Development",
    "CONTAINER_NAME": "devcontainer",  # dev containers and CI sandboxes set this too
}


@pytest.mark.parametrize(
    "azure",
    [
        {"WEBSITE_INSTANCE_ID": "0123abcd"},  # App Service, Functions Dedicated/Premium/Windows Consumption
        {"WEBSITE_OWNER_NAME": "sub+rg-westeuropewebspace"},
        {"WEBSITE_RESOURCE_GROUP": "rg-gateway"},
        {"LEGION_SERVICE_HOST": "10.0.0.1"},  # Flex Consumption
        {"CONTAINER_NAME": "E9911CE2-638", "WEBSITE_SITE_NAME": "func-gateway"},  # Linux Consumption
        {"IDENTITY_ENDPOINT": "http://localhost:42356/msi/token"},
        {"MSI_ENDPOINT": "http://127.0.0.1:41741/MSI/token/"},
    ],
)
def test_each_azure_marker_is_recognised(azure):
    assert running_in_azure({**CORE_TOOLS_LOCALLY, **azure})
    with pytest.raises(LocalDevRefused, match="GATEWAY_LOCAL_DEV_AUTH"):
        assert_local_dev_allowed({**CORE_TOOLS_LOCALLY, **azure})


def test_a_developer_machine_is_not_azure():
    assert not running_in_azure(CORE_TOOLS_LOCALLY)
    assert_local_dev_allowed(CORE_TOOLS_LOCALLY)


def test_empty_values_do_not_count():
    assert not running_in_azure({"WEBSITE_INSTANCE_ID": " ", "IDENTITY_ENDPOINT": ""})


def test_the_refusal_names_the_variables_but_not_their_values():
    with pytest.raises(LocalDevRefused) as raised:
        assert_local_dev_allowed({"IDENTITY_ENDPOINT": "http://secret-endpoint", "WEBSITE_INSTANCE_ID": "abc123"})
    assert "WEBSITE_INSTANCE_ID" in str(raised.value) and "IDENTITY_ENDPOINT" in str(raised.value)
    assert "secret-endpoint" not in str(raised.value) and "abc123" not in str(raised.value)
