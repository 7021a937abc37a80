"""Value types written as text in conveyor.yaml: durations, percentages, sizes and money.

Each type parses the user's spelling, keeps an exact value and prints one canonical spelling, so two
files that mean the same thing produce the same document. Pydantic models use them as field types;
a bad spelling becomes a `conveyor` validation error carrying a message and the fix.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from decimal import Decimal, InvalidOperation
from functools import total_ordering
from typing import Any, ClassVar

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema


class ValueFormatError(ValueError):
    """A value written in the wrong format; `hint` shows the right way to write it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def show(value: Any) -> str:
    """How a YAML value is quoted in messages: 'text', 5, true, null, a list, a mapping."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _TextValue(ABC):
    """Shared pydantic plumbing: parse from text (or an instance), dump as the canonical string."""

    __slots__ = ()

    json_pattern: ClassVar[str]
    json_examples: ClassVar[tuple[str, ...]]
    json_description: ClassVar[str]

    @classmethod
    @abstractmethod
    def parse(cls, value: Any) -> Any:
        """Parse the user's spelling; raises ValueFormatError with the fix."""

    @classmethod
    def _validate(cls, value: Any) -> Any:
        if isinstance(value, cls):
            return value
        try:
            return cls.parse(value)
        except ValueFormatError as exc:
            raise PydanticCustomError(
                "conveyor", "{message}", {"message": exc.message, "hint": exc.hint}
            ) from None

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(str, when_used="always"),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": cls.json_pattern,
            "examples": list(cls.json_examples),
            "description": cls.json_description,
        }


# Largest first: a compound duration lists its units in this order, each at most once.
_DURATION_UNITS: dict[str, int] = {
    "y": 365 * 86_400_000,
    "w": 7 * 86_400_000,
    "d": 86_400_000,
    "h": 3_600_000,
    "m": 60_000,
    "s": 1_000,
    "ms": 1,
}
# Weeks are accepted but never printed: "14d" reads better than "2w" next to "30d" and "90d".
_CANONICAL_DURATION_UNITS = ("y", "d", "h", "m", "s", "ms")
_DURATION_PART = re.compile(r"(\d+)(ms|[ywdhms])")
_DURATION_RE = re.compile(r"(?:\d+(?:ms|[ywdhms]))+")
_DURATION_HINT = "write it like 5m, 1h30m or 7d"


@total_ordering
class Duration(_TextValue):
    """A length of time such as `500ms`, `30s`, `5m`, `1h30m`, `7d`, `2w` or `1y` (= 365d)."""

    __slots__ = ("_ms",)
    json_pattern = r"^(\d+(ms|[ywdhms]))+$"
    json_examples = ("30s", "5m", "1h30m", "7d")
    json_description = "a duration: whole numbers with units y, w, d, h, m, s, ms, largest first"

    def __init__(self, milliseconds: int) -> None:
        if milliseconds < 0:
            raise ValueError("a duration cannot be negative")
        self._ms = int(milliseconds)

    @classmethod
    def parse(cls, value: Any) -> Duration:
        """Parse `5m`-style text; raises ValueFormatError with the fix for anything else."""
        if _is_number(value):
            raise ValueFormatError(f"{show(value)} is not a duration", "add a unit, like 5s, 5m or 5h")
        if not isinstance(value, str):
            raise ValueFormatError(f"expected a duration, got {show(value)}", _DURATION_HINT)
        text = value.strip()
        if not _DURATION_RE.fullmatch(text):
            raise ValueFormatError(f"'{value}' is not a duration", _DURATION_HINT)
        order = list(_DURATION_UNITS)
        total, last = 0, -1
        for amount, unit in _DURATION_PART.findall(text):
            rank = order.index(unit)
            if rank <= last:
                raise ValueFormatError(
                    f"'{value}' is not a duration",
                    "write units from largest to smallest, each once, like 1h30m",
                )
            last = rank
            total += int(amount) * _DURATION_UNITS[unit]
        return cls(total)

    @classmethod
    def of(cls, *, days: int = 0, hours: int = 0, minutes: int = 0, seconds: float = 0) -> Duration:
        """Build a duration from parts (seconds may be fractional, kept to the millisecond)."""
        ms = round(((days * 24 + hours) * 60 + minutes) * 60_000 + seconds * 1000)
        return cls(ms)

    @property
    def milliseconds(self) -> int:
        """The exact length in milliseconds."""
        return self._ms

    @property
    def seconds(self) -> float:
        """The length in seconds."""
        return self._ms / 1000

    def __str__(self) -> str:
        if self._ms == 0:
            return "0s"
        rest, parts = self._ms, []
        for unit in _CANONICAL_DURATION_UNITS:
            amount, rest = divmod(rest, _DURATION_UNITS[unit])
            if amount:
                parts.append(f"{amount}{unit}")
        return "".join(parts)

    def __repr__(self) -> str:
        return f"Duration('{self}')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Duration) and other._ms == self._ms

    def __lt__(self, other: Duration) -> bool:
        return self._ms < other._ms

    def __hash__(self) -> int:
        return hash(("Duration", self._ms))


_PERCENT_RE = re.compile(r"(\d+(?:\.\d+)?)\s?%")
_PERCENT_HINT = "write it like 1%, 12.5% or 99.9%"


@total_ordering
class Percent(_TextValue):
    """A percentage between 0% and 100%, written with its sign: `1%`, `0.1%`, `99.9%`."""

    __slots__ = ("_value",)
    json_pattern = r"^\d+(\.\d+)?%$"
    json_examples = ("1%", "12.5%", "99.9%")
    json_description = "a percentage from 0% to 100%, written with the % sign"

    def __init__(self, value: Decimal | int | str) -> None:
        number = Decimal(value)
        if not Decimal(0) <= number <= Decimal(100):
            raise ValueError("a percentage is between 0 and 100")
        self._value = number.normalize()

    @classmethod
    def parse(cls, value: Any) -> Percent:
        """Parse `12.5%`-style text; raises ValueFormatError with the fix for anything else."""
        if _is_number(value):
            raise ValueFormatError(f"{show(value)} is not a percentage", f"add a % sign: {value}%")
        if not isinstance(value, str):
            raise ValueFormatError(f"expected a percentage, got {show(value)}", _PERCENT_HINT)
        match = _PERCENT_RE.fullmatch(value.strip())
        if not match:
            raise ValueFormatError(f"'{value}' is not a percentage", _PERCENT_HINT)
        number = Decimal(match.group(1))
        if number > 100:
            raise ValueFormatError(f"'{value}' is more than 100%", "a percentage is between 0% and 100%")
        return cls(number)

    @property
    def value(self) -> float:
        """The percentage as a number: 99.9 for `99.9%`."""
        return float(self._value)

    @property
    def fraction(self) -> float:
        """The percentage as a fraction: 0.999 for `99.9%`."""
        return float(self._value / 100)

    def __str__(self) -> str:
        return f"{self._value:f}%"

    def __repr__(self) -> str:
        return f"Percent('{self}')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Percent) and other._value == self._value

    def __lt__(self, other: Percent) -> bool:
        return self._value < other._value

    def __hash__(self) -> int:
        return hash(("Percent", self._value))


_SIZE_UNITS: dict[str, int] = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4, "PB": 1024**5}
_SIZE_RE = re.compile(r"(\d+)\s?([KMGTP]?B)", re.IGNORECASE)
_SIZE_HINT = "write it like 512MB, 2GB or 1TB"


@total_ordering
class Size(_TextValue):
    """An amount of storage such as `512MB`, `2GB` or `1TB` (binary units: 1GB = 1024MB)."""

    __slots__ = ("_bytes",)
    json_pattern = r"^\d+\s?([KMGTPkmgtp]?[Bb])$"
    json_examples = ("512MB", "10GB", "1TB")
    json_description = "a size: a whole number with B, KB, MB, GB, TB or PB (1GB = 1024MB)"

    def __init__(self, size_bytes: int) -> None:
        if size_bytes < 0:
            raise ValueError("a size cannot be negative")
        self._bytes = int(size_bytes)

    @classmethod
    def parse(cls, value: Any) -> Size:
        """Parse `10GB`-style text; raises ValueFormatError with the fix for anything else."""
        if _is_number(value):
            raise ValueFormatError(f"{show(value)} is not a size", f"add a unit, like {value}GB")
        if not isinstance(value, str):
            raise ValueFormatError(f"expected a size, got {show(value)}", _SIZE_HINT)
        match = _SIZE_RE.fullmatch(value.strip())
        if not match:
            raise ValueFormatError(f"'{value}' is not a size", _SIZE_HINT)
        return cls(int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])

    @property
    def bytes(self) -> int:
        """The size in bytes."""
        return self._bytes

    def __str__(self) -> str:
        for unit in ("PB", "TB", "GB", "MB", "KB"):
            factor = _SIZE_UNITS[unit]
            if self._bytes and self._bytes % factor == 0:
                return f"{self._bytes // factor}{unit}"
        return f"{self._bytes}B"

    def __repr__(self) -> str:
        return f"Size('{self}')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Size) and other._bytes == self._bytes

    def __lt__(self, other: Size) -> bool:
        return self._bytes < other._bytes

    def __hash__(self) -> int:
        return hash(("Size", self._bytes))


_MONEY_RE = re.compile(r"\$?\s?(\d{1,3}(?:,\d{3})+|\d+)(\.\d{1,2})?")
_MONEY_HINT = "write an amount in dollars like 300 or $300"


@total_ordering
class Money(_TextValue):
    """An amount in US dollars such as `300`, `$300` or `$1,250.50`."""

    __slots__ = ("_amount",)
    json_pattern = r"^\$?\s?(\d{1,3}(,\d{3})+|\d+)(\.\d{1,2})?$"
    json_examples = ("$300", "$2000", "$49.50")
    json_description = "an amount in US dollars, with or without the $ sign"

    def __init__(self, amount: Decimal | int | str) -> None:
        number = Decimal(amount)
        if number < 0:
            raise ValueError("an amount of money cannot be negative")
        self._amount = number.quantize(Decimal("0.01"))

    @classmethod
    def parse(cls, value: Any) -> Money:
        """Parse `$300`-style text or a plain number; raises ValueFormatError with the fix otherwise."""
        if _is_number(value):
            if value < 0:
                raise ValueFormatError(
                    f"{show(value)} is not an amount of money", "amounts cannot be negative"
                )
            try:
                return cls(Decimal(str(value)))
            except InvalidOperation:
                raise ValueFormatError(f"{show(value)} is not an amount of money", _MONEY_HINT) from None
        if not isinstance(value, str):
            raise ValueFormatError(f"expected an amount of money, got {show(value)}", _MONEY_HINT)
        match = _MONEY_RE.fullmatch(value.strip())
        if not match:
            raise ValueFormatError(f"'{value}' is not an amount of money", _MONEY_HINT)
        return cls(Decimal(match.group(1).replace(",", "") + (match.group(2) or "")))

    @property
    def amount(self) -> Decimal:
        """The exact amount in dollars."""
        return self._amount

    def __str__(self) -> str:
        whole, cents = divmod(self._amount, 1)
        return f"${int(whole)}" if cents == 0 else f"${self._amount:f}"

    def __repr__(self) -> str:
        return f"Money('{self}')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and other._amount == self._amount

    def __lt__(self, other: Money) -> bool:
        return self._amount < other._amount

    def __hash__(self) -> int:
        return hash(("Money", self._amount))
