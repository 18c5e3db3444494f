"""The limits a caller can have, their defaults and per-caller overrides (pure: no I/O)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

NANO_USD_PER_USD = 1_000_000_000
MAX_TOKENS_OR_REQUESTS = 10**15
MAX_COST_USD = Decimal(10**9)  # in nano-USD this still fits the counters' 64-bit integers


class Window(StrEnum):
    MINUTE = "minute"
    DAY = "day"
    MONTH = "month"


class Unit(StrEnum):
    REQUESTS = "requests"
    TOKENS = "tokens"
    NANO_USD = "nano_usd"  # cost budgets are counted in whole billionths of a dollar: integers, exact


class Limit(StrEnum):
    """A limit's name, as in settings (``GATEWAY_DEFAULT_<NAME>``) and in caller policies."""

    REQUESTS_PER_MINUTE = "requests_per_minute"
    TOKENS_PER_MINUTE = "tokens_per_minute"
    TOKENS_PER_DAY = "tokens_per_day"
    TOKENS_PER_MONTH = "tokens_per_month"
    COST_USD_PER_MONTH = "cost_usd_per_month"

    @property
    def window(self) -> Window:
        return {
            Limit.REQUESTS_PER_MINUTE: Window.MINUTE,
            Limit.TOKENS_PER_MINUTE: Window.MINUTE,
            Limit.TOKENS_PER_DAY: Window.DAY,
            Limit.TOKENS_PER_MONTH: Window.MONTH,
            Limit.COST_USD_PER_MONTH: Window.MONTH,
        }[self]

    @property
    def unit(self) -> Unit:
        if self is Limit.REQUESTS_PER_MINUTE:
            return Unit.REQUESTS
        if self is Limit.COST_USD_PER_MONTH:
            return Unit.NANO_USD
        return Unit.TOKENS

    @property
    def is_rate(self) -> bool:
        """Per-minute limits are rates (429, retry when the minute rolls over); day and month ones are budgets."""
        return self.window is Window.MINUTE

    @property
    def short(self) -> str:
        return {
            Limit.REQUESTS_PER_MINUTE: "rpm",
            Limit.TOKENS_PER_MINUTE: "tpm",
            Limit.TOKENS_PER_DAY: "tpd",
            Limit.TOKENS_PER_MONTH: "tpmo",
            Limit.COST_USD_PER_MONTH: "costmo",
        }[self]


class LimitError(ValueError):
    """An invalid limit; ``field`` names it (``limits.tokens_per_day``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def to_units(limit: Limit, value: int | Decimal) -> int:
    """A limit's value in the counter's integer unit (cost: USD -> nano-USD, rounded down: never more budget)."""
    if limit.unit is Unit.NANO_USD:
        return int(Decimal(value) * NANO_USD_PER_USD)
    return int(value)


def parse_limit_value(limit: Limit, value: Any, field: str) -> int | Decimal | None:
    """A limit from JSON or a setting: ``None`` (unlimited), a whole number, or for cost a finite USD amount."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise LimitError(field, f"'{field}' must be a number or null, not true/false.")
    if limit.unit is Unit.NANO_USD:
        amount = Decimal("NaN")
        if isinstance(value, int | float) and math.isfinite(value):
            amount = Decimal(str(value))
        elif isinstance(value, str):
            with contextlib.suppress(ArithmeticError):
                amount = Decimal(value)
        if amount.is_finite() and 0 <= amount <= MAX_COST_USD:
            return amount
        raise LimitError(field, f"'{field}' must be an amount of US dollars from 0 to {MAX_COST_USD}, or null.")
    if isinstance(value, int) and 0 <= value <= MAX_TOKENS_OR_REQUESTS:
        return value
    raise LimitError(field, f"'{field}' must be a whole number from 0 to 10^15, or null.")


@dataclass(frozen=True)
class Limits:
    """Resolved limits: ``None`` means unlimited."""

    values: Mapping[Limit, int | Decimal | None] = field(default_factory=dict)

    def get(self, limit: Limit) -> int | Decimal | None:
        return self.values.get(limit)

    def active(self) -> list[tuple[Limit, int]]:
        """The limits that apply, in counter units."""
        return [(limit, to_units(limit, value)) for limit in Limit if (value := self.values.get(limit)) is not None]

    def to_json(self) -> dict[str, Any]:
        return {limit.value: _jsonable(self.values.get(limit)) for limit in Limit}


@dataclass(frozen=True)
class LimitOverrides:
    """What a caller policy says: a limit absent here takes the default; present with ``None`` is unlimited."""

    values: Mapping[Limit, int | Decimal | None] = field(default_factory=dict)

    def over(self, defaults: Limits) -> Limits:
        return Limits({limit: self.values[limit] if limit in self.values else defaults.get(limit) for limit in Limit})

    def alone(self) -> Limits:
        """Only what is set here (per-deployment limits have no defaults)."""
        return Limits(dict(self.values))

    @property
    def empty(self) -> bool:
        return not self.values

    def to_json(self, *, decimal_as_text: bool = False) -> dict[str, Any]:
        """As JSON; ``decimal_as_text`` keeps dollar amounts exact (storage), else they are JSON numbers."""
        return {limit.value: _jsonable(value, decimal_as_text) for limit, value in self.values.items()}

    @classmethod
    def parse(cls, raw: Any, field: str) -> LimitOverrides:
        """From a policy body: an object of known limit names; unknown names and bad values name the field."""
        if not isinstance(raw, dict):
            raise LimitError(field, f"'{field}' must be an object such as {{\"tokens_per_day\": 200000}}.")
        values: dict[Limit, int | Decimal | None] = {}
        for name, value in raw.items():
            try:
                limit = Limit(name)
            except ValueError:
                known = ", ".join(limit.value for limit in Limit)
                raise LimitError(
                    f"{field}.{name}", f"'{field}.{name}' is not a limit; known limits: {known}."
                ) from None
            values[limit] = parse_limit_value(limit, value, f"{field}.{name}")
        return cls(values)


def _jsonable(value: int | Decimal | None, decimal_as_text: bool = False) -> int | float | str | None:
    if isinstance(value, Decimal):
        return str(value) if decimal_as_text else float(value)
    return value
