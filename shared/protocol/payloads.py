"""Request bodies the gateway forwards without holding them in memory (multipart uploads)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StreamedBody:
    """A body sent upstream in chunks, with its exact length known beforehand (sent as ``content-length``).

    ``source`` makes a fresh iterator each time, so the same body can be sent again on another backend.
    ``renamed`` makes the same body for a backend whose deployment has another name (its ``model`` field).
    """

    content_type: str
    length: int
    source: Callable[[], AsyncIterator[bytes]]
    renamed: Callable[[str], StreamedBody] | None = None

    def open(self) -> AsyncIterator[bytes]:
        return self.source()

    def for_deployment(self, name: str) -> StreamedBody:
        return self.renamed(name) if self.renamed is not None else self
