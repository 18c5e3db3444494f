"""Azure OpenAI deployment names."""

from __future__ import annotations

import re

# Letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 characters. Anything else (slashes,
# '..', encoded characters) is refused before it can shape a URL.
_DEPLOYMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def is_deployment_name(value: object) -> bool:
    return isinstance(value, str) and _DEPLOYMENT_NAME.fullmatch(value) is not None
