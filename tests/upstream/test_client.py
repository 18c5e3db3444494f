"""The upstream client's proxy comes from the environment, read once (HTTPS_PROXY / NO_PROXY, as httpx did)."""

from __future__ import annotations

import errno

import aiohttp

from shared.upstream.client import connection_lost, environment_proxy


def test_the_environment_proxy_applies_unless_no_proxy_names_the_host(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    endpoint = "https://contoso-openai.openai.azure.com"
    assert environment_proxy(endpoint) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert environment_proxy(endpoint) == "http://proxy.internal:3128"
    monkeypatch.setenv("NO_PROXY", ".openai.azure.com")
    assert environment_proxy(endpoint) is None


def _caused_by(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


def test_what_a_lost_connection_means_for_the_call():
    # Writing to a connection that was already closing: never sent, so even a stored call may go again.
    unwritten = connection_lost(
        _caused_by(aiohttp.ClientOSError(None, "Can not write request body"), aiohttp.ClientConnectionResetError())
    )
    assert (unwritten.may_have_run, unwritten.connection_dropped, unwritten.status) == (False, True, 502)
    # Sent, then the server closed or reset the connection without an answer: it may have run.
    for error in (aiohttp.ServerDisconnectedError(), aiohttp.ClientOSError(errno.ECONNRESET, "reset")):
        lost = connection_lost(error)
        assert (lost.may_have_run, lost.connection_dropped) == (True, True)
    broken = connection_lost(aiohttp.ClientPayloadError("truncated"))
    assert (broken.may_have_run, broken.connection_dropped) == (True, False)
