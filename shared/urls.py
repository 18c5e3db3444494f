"""The one rule for where credentials may travel: https, or plain http to this machine (local emulators only)."""

from __future__ import annotations

from urllib.parse import urlparse

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback_http(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme == "http" and parsed.hostname in LOOPBACK_HOSTS


def https_or_loopback(url: str) -> bool:
    parsed = urlparse(url)
    return (parsed.scheme == "https" and bool(parsed.hostname)) or is_loopback_http(url)
