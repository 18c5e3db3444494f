"""Scripted misbehaviour for the simulator: which deployment, what fault, how many times."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

# ``content_policy_violation``: image calls get Azure's safety refusal (shared/local/simulator/media.py).
Fault = Literal["none", "429", "500", "503", "cutoff", "content_policy_violation"]
# How a batch moves when it is read (shared/local/simulator/files_batches.py): one status per read, straight to
# ``completed``, not at all, to ``failed``, or to ``expired`` with half of its lines done.
BatchProgress = Literal["step", "complete", "hold", "fail", "expire"]


class Behaviour(BaseModel):
    """One rule. The first rule that matches a request's deployment (or ``*``) and has uses left applies."""

    deployment: str = "*"
    fault: Fault = "none"
    times: int | None = Field(default=None, ge=1, description="uses before the rule expires; null = forever")
    retry_after_seconds: int = Field(default=2, ge=0)
    retry_after_ms: int | None = Field(default=None, ge=0)
    first_byte_delay_ms: int = Field(default=0, ge=0, le=60_000)
    chunk_delay_ms: int = Field(default=0, ge=0, le=10_000)
    completion_tokens: int | None = Field(default=None, ge=1, le=4096, description="reply length in tokens")
    cutoff_after_chunks: int = Field(default=3, ge=0)
    batch_progress: BatchProgress = "step"
    background_steps: int = Field(
        default=2, ge=0, le=100, description="retrieves a background response takes to finish (0: the first)"
    )


@dataclass
class _Rule:
    behaviour: Behaviour
    remaining: int | None


class BehaviourBook:
    """Thread-safe list of rules (the simulator may serve several event loops in tests)."""

    def __init__(self) -> None:
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()

    def add(self, behaviour: Behaviour) -> None:
        with self._lock:
            self._rules.append(_Rule(behaviour, behaviour.times))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{**r.behaviour.model_dump(), "remaining": r.remaining} for r in self._rules]

    def take(self, deployment: str) -> Behaviour:
        with self._lock:
            for rule in self._rules:
                if rule.behaviour.deployment in ("*", deployment) and rule.remaining != 0:
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule.behaviour
        return Behaviour()
