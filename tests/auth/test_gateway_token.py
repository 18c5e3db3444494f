"""The token CLI, as far as it can be exercised without reaching Microsoft Entra ID."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.azurite import ROOT
from tools.gateway_token import SECRET_ENV, acquire_token, build_parser, main

BASE = ["--tenant", "t-id", "--client-id", "c-id", "--scope", "api://gateway/.default"]


def test_arguments_are_parsed():
    args = build_parser().parse_args([*BASE, "--device-code"])
    assert (args.tenant, args.client_id, args.scope, args.device_code) == (
        "t-id",
        "c-id",
        "api://gateway/.default",
        True,
    )
    assert args.authority_host == "https://login.microsoftonline.com"


@pytest.mark.parametrize(
    "secret_args", [["--client-secret", "s3cr3t-value"], ["--client-secret=s3cr3t-value"], ["--secret", "s3cr3t-value"]]
)
def test_a_secret_on_the_command_line_is_refused_without_echoing_it(secret_args, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*BASE, *secret_args], env={})
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert SECRET_ENV in err and "s3cr3t-value" not in err


def test_client_credentials_need_the_secret_in_the_environment(capsys):
    with pytest.raises(SystemExit) as exited:
        main(BASE, env={})
    assert exited.value.code == 2
    assert SECRET_ENV in capsys.readouterr().err


def test_the_library_needs_a_secret_or_the_device_code_flow():
    with pytest.raises(ValueError, match=SECRET_ENV):
        acquire_token("t-id", "c-id", "api://gateway/.default")


def test_the_module_runs_as_a_cli():
    result = subprocess.run(
        [sys.executable, "-m", "tools.gateway_token", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and "--device-code" in result.stdout and "--client-secret" not in result.stdout
