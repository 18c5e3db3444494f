"""The finance CLI's arguments and sign-in choice (the download itself: tests/e2e/test_finance.py)."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from tests.azurite import ROOT
from tools.usage import Progress, auth_headers, build_parser, main, query_params


def test_a_month_with_grouping_format_and_filters_becomes_the_query():
    args = build_parser().parse_args(
        ["--month", "2026-11", "--group-by", "cost_center,day", "--format", "focus", "--cost-center", "CC-1"]
    )
    assert query_params(args) == {
        "group_by": "cost_center,day",
        "format": "focus",
        "month": "2026-11",
        "cost_center": "CC-1",
    }


def test_sign_in_is_msal_when_asked_else_an_api_key_else_local_dev():
    parser = build_parser()
    assert auth_headers(parser.parse_args([]), {"GATEWAY_API_KEY": "k"}) == {"api-key": "k"}
    assert auth_headers(parser.parse_args([]), {}) == {}
    with pytest.raises(ValueError, match="--tenant, --client-id and --scope"):
        auth_headers(parser.parse_args(["--tenant", "t"]), {})
    with pytest.raises(ValueError, match="GATEWAY_CLIENT_SECRET"):  # client credentials need the secret
        auth_headers(parser.parse_args(["--tenant", "t", "--client-id", "c", "--scope", "api://g/.default"]), {})


def test_month_and_from_are_exclusive_and_a_gateway_is_required(capsys):
    with pytest.raises(SystemExit):
        main(["--month", "2026-11", "--from", "2026-11-01"], env={"GATEWAY_URL": "http://x"})
    with pytest.raises(SystemExit):
        main(["--month", "2026-11"], env={})
    assert "GATEWAY_URL" in capsys.readouterr().err


def test_the_progress_bar_draws_on_one_line():
    out = io.StringIO()
    bar = Progress(out, total=2048, enabled=True)
    bar.advance(1024)
    bar.advance(1024)
    bar.finish()
    assert out.getvalue().startswith("\r[###############...............]  50% 1.0 KiB")
    assert out.getvalue().endswith("\r[##############################] 100% 2.0 KiB\n")


def test_the_module_runs_as_a_cli():
    result = subprocess.run(
        [sys.executable, "-m", "tools.usage", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and "--device-code" in result.stdout and "--format" in result.stdout
