"""Pure: turn one source value into its masked stand-in, deterministically, with a secret key.

The masked-clone pipeline (`conveyor data clone production --to staging`) calls `Masker.mask` for
every cell of a column that has a rule; the pre-flight in `data/rules.py` asks a `Transform` what it
can promise (distinct outputs, NULLs, which column types it writes). An output is a function of
three things only — the masking key, the transform with its options, and the input value — computed
with HMAC-SHA256 (ADR 0012). No table or column name enters it, so the same e-mail masks the same
way in `users` and in `invoices`, tonight and tomorrow, and foreign keys survive; another key gives
unrelated outputs. Nothing here reads a clock, a file, a database or `random`.

NULL stays NULL under every transform, and a value becomes NULL only under `null`. A drawn output
(names, e-mails, numbers) is drawn again while it contains its input, so a cell never keeps its
own value (ADR 0012 says how far that promise goes).
"""

from __future__ import annotations

import difflib
import hmac
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import cached_property, partial
from typing import Any, Literal, TypeVar

from conveyor.errors import InvalidRequest

KEY_MIN_BYTES = 16
"""A masking key shorter than this is refused: it could be guessed, and with it every masked value."""

UNIQUE_BITS = 96
"""Keyed-hash bits a unique-safe output carries: 10⁹ distinct values collide with odds below 10⁻¹¹."""
UNIQUE_HEX = UNIQUE_BITS // 4

LEAK_MIN = 4
"""Inputs with at least this many letters and digits are never found inside their own output."""
MAX_ATTEMPTS = 32

CARD_MIN_REPLACED = 6
"""A card number keeps its first/last digits only when at least this many digits remain to replace."""

RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
RESERVED_TLDS = ("example", "test", "invalid", "localhost")
"""RFC 2606 names: mail to a masked address can never reach a real mailbox."""

OptionValue = str | int | float | bool | None
Category = Literal["text", "date", "uuid", "number", "boolean", "json", "bytes", "other"]
"""What kind of column a PostgreSQL type is, as far as a transform's output cares."""

TEXT: frozenset[Category] = frozenset({"text"})


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = _words(
    "Aaliyah Adam Aiko Alejandro Amara Amelia Andrei Anna Arjun Astrid Ayesha Beatriz Benjamin Camila "
    "Carlos Chloe Daniel Dara Diego Elena Elif Emeka Emil Emma Ethan Fatima Felix Freya Gabriel Grace "
    "Hana Hassan Ines Isaac Ivan Jada Jamal Jana Javier Jin Jonas Julia Kai Karin Kenji Lara Leila Leo "
    "Liam Lucia Luka Maya Mateo Mei Mia Mikael Nadia Naomi Nikos Noah Nora Oliver Omar Oskar Priya "
    "Rafael Ravi Rosa Ruth Samir Sara Sofia Soren Tariq Tess Theo Tomas Uma Valentina Victor Wei Yara "
    "Yusuf Zara Zoe"
)
LAST_NAMES = _words(
    "Abara Adams Ahmed Alvarez Andersen Bauer Becker Bianchi Brennan Carter Castillo Chen Costa Cruz "
    "Dahl Dubois Ekstrom Evans Farouk Fischer Flores Garcia Gomez Gupta Haddad Hansen Hartmann Hayes "
    "Hughes Ibrahim Ito Jensen Johnson Kaur Keller Khan Kim Kowalski Kruger Larsen Laurent Lee Lindqvist "
    "Lopez Martin Mendes Moreau Murphy Nakamura Nguyen Novak Okafor Olsen Ortiz Park Patel Perez Petrov "
    "Quinn Ramos Reyes Rossi Sato Schmidt Silva Singh Sorensen Suzuki Tanaka Torres Tran Varga Vogel "
    "Walsh Weber Wong Yilmaz Young Zhang Ziegler"
)
STREETS = _words(
    "Acacia Alder Ash Aspen Beech Birch Bluebell Briar Cedar Chestnut Clover Cypress Elm Fern Foxglove "
    "Hawthorn Hazel Heather Holly Juniper Larch Laurel Lilac Linden Magnolia Maple Meadow Mill Oak "
    "Orchard Pine Poplar Quarry River Rowan Sage Spruce Station Sycamore Thistle Valley Willow Yew"
)
STREET_TYPES = ("Street", "Avenue", "Road", "Lane", "Drive", "Way", "Court", "Place")
CARD_FIRST_DIGITS = "3456"
"""The first digit of a replaced card number: the major industry identifiers of real card brands."""


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to a misspelt word, if one is close enough."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str], listing: str = "use one of") -> str:
    """'did you mean 'x'?' when a choice is close, otherwise the list of choices."""
    options = list(choices)
    close = closest(word, options)
    return f"did you mean '{close}'?" if close else f"{listing}: {', '.join(options)}"


def _reserved_domain(domain: str) -> str | None:
    labels = domain.split(".")
    if not all(re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", label) for label in labels):
        return "must be a lowercase domain name such as example.com"
    if labels[-1] in RESERVED_TLDS or any(
        domain == reserved or domain.endswith("." + reserved) for reserved in RESERVED_DOMAINS
    ):
        return None
    return (
        "must be a domain RFC 2606 reserves (example.com, example.net, example.org, or one under "
        ".test, .example or .invalid), so no masked address can reach a real mailbox"
    )


def _column_name(name: str) -> str | None:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", name):
        return None
    return "must be a column name of the same table (letters, digits, '_' and '$')"


def _single_character(text: str) -> str | None:
    return None if len(text) == 1 else "must be exactly one character"


@dataclass(frozen=True)
class Option:
    """One setting a transform takes: its type, default and allowed values."""

    name: str
    kind: Literal["int", "bool", "str", "scalar"]
    about: str
    default: OptionValue = None
    low: int = 0
    high: int = 0
    required: bool = False
    check: Callable[[str], str | None] | None = None
    shapes_output: bool = True
    """False for an option that picks where the randomness comes from, not what the output looks like."""

    def problem(self, value: object) -> str | None:
        """Why `value` cannot be this option's value; None when it can."""
        if self.kind == "bool":
            return None if isinstance(value, bool) else "must be true or false"
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
                return f"must be a whole number from {self.low} to {self.high}"
            return None
        if self.kind == "str":
            if not isinstance(value, str):
                return "must be text"
            return self.check(value) if self.check else None
        if not isinstance(value, str | int | float | bool):
            return "must be text, a number, true or false"
        return None

    def is_default(self, value: OptionValue) -> bool:
        """Whether `value` is the default (same type too: 0 is not False)."""
        return not self.required and type(value) is type(self.default) and value == self.default


class _WrongType(Exception):
    """A value of a Python type the transform cannot read; `wants` names what it reads."""

    def __init__(self, wants: str) -> None:
        super().__init__(wants)
        self.wants = wants


class _Draws:
    """Uniform choices from the keyed HMAC of one (transform, attempt, seed), extended block by block."""

    __slots__ = ("_bits", "_blocks", "_key", "_message", "_pool", "digest")

    def __init__(self, key: bytes, domain: bytes, attempt: int, seed: bytes) -> None:
        self._key = key
        # the domain is JSON and never holds a NUL byte, so (domain, attempt, seed) reads back one way only
        self._message = domain + b"\x00" + attempt.to_bytes(1, "big") + seed
        self.digest = self._block(0)
        self._pool = int.from_bytes(self.digest, "big")
        self._bits = 256
        self._blocks = 1

    def _block(self, index: int) -> bytes:
        return hmac.digest(self._key, index.to_bytes(2, "big") + self._message, "sha256")

    def below(self, n: int) -> int:
        """A number in [0, n), biased by at most n / 2⁶⁴."""
        while self._bits < n.bit_length() + 64:
            self._pool = (self._pool << 256) | int.from_bytes(self._block(self._blocks), "big")
            self._blocks += 1
            self._bits += 256
        self._pool, drawn = divmod(self._pool, n)
        self._bits -= n.bit_length()
        return drawn

    def pick(self, choices: tuple[str, ...] | list[str] | str) -> str:
        """One of `choices`."""
        return choices[self.below(len(choices))]


DrawsFor = Callable[[bytes], _Draws]
Apply = Callable[[DrawsFor, "Transform", Any, Mapping[str, Any] | None], Any]


@dataclass(frozen=True)
class Kind:
    """A transform's name, options, the columns it can write, and how it computes an output."""

    name: str
    about: str
    apply: Apply
    options: tuple[Option, ...] = ()
    writes: frozenset[Category] | None = TEXT
    """Column categories its output fits; None for any."""
    masks: bool = True
    """False only for `keep`: the source value goes through."""
    drawn: bool = True
    """The output is drawn from the HMAC, so it is drawn again while it contains the input."""

    def option(self, name: str) -> Option | None:
        """The option called `name`, if this transform takes one."""
        return next((option for option in self.options if option.name == name), None)


@dataclass(frozen=True)
class Transform:
    """A transform with its options: what a rule holds. Options at their default are dropped, so equal
    rules compare equal (`card_number` == `{transform: card_number, keep_last: 0}`)."""

    name: str
    options: tuple[tuple[str, OptionValue], ...] = ()

    def __post_init__(self) -> None:
        kind = kind_of(self.name)
        given = dict(self.options)
        for key, value in given.items():
            option = kind.option(key)
            if option is None:
                takes = [o.name for o in kind.options]
                hint = did_you_mean(key, takes, f"{self.name} takes") if takes else "it takes no options"
                raise InvalidRequest(f"{self.name} has no option '{key}'", hint=hint)
            reason = option.problem(value)
            if reason is not None:
                raise InvalidRequest(
                    f"option {key} of {self.name} is {value!r}: it {reason}", hint=f"{key}: {option.about}"
                )
        for option in kind.options:
            if option.required and option.name not in given:
                raise InvalidRequest(f"{self.name} needs option {option.name}", hint=option.about)
        kept = sorted((k, v) for k, v in given.items() if not _option(kind, k).is_default(v))
        object.__setattr__(self, "options", tuple(kept))

    @classmethod
    def of(cls, name: str, **options: OptionValue) -> Transform:
        """`Transform.of("card_number", keep_last=4)`; InvalidRequest says what is wrong."""
        return cls(name, tuple(options.items()))

    @property
    def kind(self) -> Kind:
        """The transform's definition."""
        return KINDS[self.name]

    @cached_property
    def settings(self) -> Mapping[str, OptionValue]:
        """Every option's value, defaults included."""
        given = dict(self.options)
        return {o.name: given.get(o.name, o.default) for o in self.kind.options}

    def option(self, name: str) -> Any:
        """One option's value (its default when the rule leaves it out)."""
        return self.settings[name]

    @cached_property
    def domain(self) -> bytes:
        """What separates this transform's outputs from every other's in the HMAC input."""
        shaping = {k: v for k, v in self.options if _option(self.kind, k).shapes_output}
        return json.dumps([self.name, shaping], sort_keys=True, separators=(",", ":")).encode()

    def fits(self, category: Category) -> bool:
        """Whether the output can be written to a column of this category."""
        if self.name == "hash" and category == "uuid":
            return self.option("length") == 32  # 32 hex digits are a valid uuid literal
        return self.kind.writes is None or category in self.kind.writes

    def to_rule(self) -> str | dict[str, OptionValue]:
        """The shortest rule that means this transform, as conveyor.yaml would hold it."""
        if self.name == "constant" and isinstance(self.option("value"), str):
            return f"constant:{self.option('value')}"
        if not self.options:
            return self.name
        return {"transform": self.name, **dict(self.options)}

    def __str__(self) -> str:
        rule = self.to_rule()
        if isinstance(rule, str):
            return rule
        options = ", ".join(f"{k}={json.dumps(v)}" for k, v in self.options)
        return f"{self.name}({options})"


def _option(kind: Kind, name: str) -> Option:
    option = kind.option(name)
    assert option is not None, f"{kind.name} has no option {name}"
    return option


def kind_of(name: str) -> Kind:
    """The transform called `name`; InvalidRequest with a did-you-mean hint for an unknown one."""
    kind = KINDS.get(name)
    if kind is None:
        raise InvalidRequest(f"unknown masking transform '{name}'", hint=did_you_mean(name, KINDS))
    return kind


def unique_safe(transform: Transform) -> bool:
    """Whether distinct inputs give distinct outputs by construction (odds of a collision negligible).

    `null` counts: NULLs never clash in a unique index, unless it is NULLS NOT DISTINCT (the
    pre-flight checks that).
    """
    if transform.name in ("keep", "null"):
        return True
    if transform.name == "hash":
        return int(transform.option("length")) >= UNIQUE_HEX
    if transform.name == "email":
        return bool(transform.option("unique"))
    return False


def for_unique(transform: Transform) -> Transform:
    """The unique-safe form of a transform, for a column a unique index covers; InvalidRequest if none."""
    if unique_safe(transform):
        return transform
    if transform.name == "email":
        return Transform("email", (*transform.options, ("unique", True)))
    if transform.name == "hash":
        kept = tuple((k, v) for k, v in transform.options if k != "length")
        return Transform("hash", (*kept, ("length", UNIQUE_HEX)))
    raise InvalidRequest(
        f"{transform} cannot keep a unique column's values distinct",
        hint='use {"transform": "email", "unique": true} for e-mail addresses, hash for other text, '
        "or keep for a column that holds nothing personal",
    )


@dataclass(frozen=True)
class Collision:
    """Distinct source values that mask to one output. `inputs` are source values: never log them."""

    output: Any
    inputs: tuple[Any, ...]

    def describe(self) -> str:
        """The collision without the source values."""
        return f"{len(self.inputs)} distinct source values mask to {self.output!r}"


class Masker:
    """Applies transforms with one masking key: same key, transform and value give the same output."""

    def __init__(self, key: str | bytes) -> None:
        secret = key.encode() if isinstance(key, str) else bytes(key)
        if len(secret) < KEY_MIN_BYTES:
            raise InvalidRequest(
                f"the masking key has {len(secret)} bytes; it needs at least {KEY_MIN_BYTES}",
                hint="store a random value of at least 32 characters as the source environment's secret "
                "MASKING_KEY (conveyor secret set ENV MASKING_KEY --generate)",
            )
        # a sub-key, so the secret's bytes never meet a masked value directly; v1 names the algorithm
        self._key = hmac.digest(secret, b"conveyor masking key v1", "sha256")

    @cached_property
    def fingerprint(self) -> str:
        """Twelve hex digits that tell keys apart in evidence without revealing them."""
        return hmac.digest(self._key, b"fingerprint", "sha256")[:6].hex()

    def __repr__(self) -> str:
        return f"Masker(key fingerprint {self.fingerprint})"

    def mask(self, transform: Transform, value: Any, row: Mapping[str, Any] | None = None) -> Any:
        """The masked value; `row` is the source row, needed by `date_shift` with `by`.

        InvalidRequest when the transform cannot read the value's type; the message never holds the value.
        """
        if value is None:
            return None
        kind = transform.kind
        try:
            if not kind.drawn:
                return kind.apply(partial(_Draws, self._key, transform.domain, 0), transform, value, row)
            output: Any = None
            for attempt in range(MAX_ATTEMPTS):
                draws = partial(_Draws, self._key, transform.domain, attempt)
                output = kind.apply(draws, transform, value, row)
                if not _leaks(value, output):
                    break
            return output
        except _WrongType as wrong:
            raise InvalidRequest(
                f"{transform} masks {wrong.wants}, and got a value of type {type(value).__name__}",
                hint="give the column a transform for its type (hash, redact, constant:…, null or keep)",
            ) from None

    def check_unique(self, transform: Transform, values: Iterable[Any]) -> tuple[Collision, ...]:
        """Every output that distinct non-NULL `values` share (NULL outputs never clash, as in SQL)."""
        by_output: dict[Any, list[Any]] = {}
        for value in dict.fromkeys(v for v in values if v is not None):
            output = self.mask(transform, value)
            if output is not None:
                by_output.setdefault(output, []).append(value)
        return tuple(Collision(out, tuple(ins)) for out, ins in by_output.items() if len(ins) > 1)


def _seed(value: Any) -> bytes:
    """The bytes a value is keyed by: its text, so 42 and "42" mask alike."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int | Decimal | uuid.UUID):
        return str(value).encode()
    if isinstance(value, float):
        return repr(value).encode()
    if isinstance(value, date | time):
        return value.isoformat().encode()
    raise _WrongType("text, numbers, dates and bytes")


_NOT_ALNUM = re.compile(r"[\W_]+")
"""What `str.isalnum` rejects: re's Unicode \\w is exactly isalnum() plus '_'."""


def _normal(text: str) -> str:
    return _NOT_ALNUM.sub("", text.casefold())


def _leaks(value: Any, output: Any) -> bool:
    """Whether the output holds the input, ignoring case, spaces and punctuation."""
    if isinstance(value, str):
        source = _normal(value)
    elif isinstance(value, int | Decimal | uuid.UUID) and not isinstance(value, bool):
        source = _normal(str(value))
    else:
        return False
    return len(source) >= LEAK_MIN and source in _normal(str(output))


def _keep(draws: DrawsFor, t: Transform, value: Any, row: Mapping[str, Any] | None) -> Any:
    return value


def _null(draws: DrawsFor, t: Transform, value: Any, row: Mapping[str, Any] | None) -> Any:
    return None


def _constant(draws: DrawsFor, t: Transform, value: Any, row: Mapping[str, Any] | None) -> Any:
    return t.option("value")


def _redact(draws: DrawsFor, t: Transform, value: Any, row: Mapping[str, Any] | None) -> str:
    if not isinstance(value, str):
        raise _WrongType("text")
    return str(t.option("char")) * len(value)


def _hash(draws: DrawsFor, t: Transform, value: Any, row: Mapping[str, Any] | None) -> str:
    return draws(_seed(value)).digest.hex()[: int(t.option("length"))]


def _email(draws: DrawsFor, t: Transform, value: Any, row: Mapping[str, Any] | None) -> str:
    d = draws(_seed(value))
    local = f"{d.pick(FIRST_NAMES).lower()}.{d.pick(LAST_NAMES).lower()}"
    local += f".{d.digest.hex()[:UNIQUE_HEX]}" if t.option("unique") else str(1000 + d.below(9000))
    return f"{local}@{t.option('domain') or d.pick(RESERVED_DOMAINS)}"


def _name(draws: DrawsFor, t: Transform, value: Any, row: Mapping[str, Any] | None) -> str:
    d = draws(_seed(value))
    return f"{d.pick(FIRST_NAMES)} {d.pick(LAST_NAMES)}"


def _first_name(draws: DrawsFor, t: Transform, value: Any, row: Mapping[str, Any] | None) -> str:
    return draws(_seed(value)).pick(FIRST_NAMES)


def _last_name(draws: DrawsFor, t: Transform, value: Any, row: Mapping[str, Any] | None) -> str:
    return draws(_seed(value)).pick(LAST_NAMES)


def _address(draws: DrawsFor, t: Transform, value: Any, row: Mapping[str, Any] | None) -> str:
    d = draws(_seed(value))
    return f"{1 + d.below(9999)} {d.pick(STREETS)} {d.pick(STREET_TYPES)}"


def _phone(draws: DrawsFor, t: Transform, value: Any, row: Mapping[str, Any] | None) -> str:
    # NANP keeps 555-0100..0199 for fiction in every area code: nobody real gets a staging SMS
    d = draws(_seed(value))
    area = f"{2 + d.below(8)}{d.below(9)}{d.below(10)}"
    if area[1:] == "11":  # N11 codes are service numbers, not area codes
        area = area[0] + "12"
    return f"+1{area}55501{d.below(100):02d}"


def _card_number(draws: DrawsFor, t: Transform, value: Any, row: Mapping[str, Any] | None) -> str:
    if not isinstance(value, str):
        raise _WrongType("text (digits, optionally with spaces or dashes)")
    digits = [int(ch) for ch in value if ch.isdigit()]
    n = len(digits)
    first, last = int(t.option("keep_first")), int(t.option("keep_last"))
    if n < first + last + CARD_MIN_REPLACED:
        first = last = 0
    if n == 0:
        return value
    d = draws(_seed(value))
    fix = n - last - 1  # the last replaced digit is chosen to make the Luhn sum come out right
    for i in range(first, n - last):
        digits[i] = int(d.pick(CARD_FIRST_DIGITS)) if i == 0 and i != fix else d.below(10)
    others = sum(_luhn_term(digits[i], n - 1 - i) for i in range(n) if i != fix)
    digits[fix] = next(x for x in range(10) if (others + _luhn_term(x, n - 1 - fix)) % 10 == 0)
    return _fill(value, "".join(map(str, digits)), str.isdigit)


def _luhn_term(digit: int, from_right: int) -> int:
    if from_right % 2 == 0:
        return digit
    doubled = 2 * digit
    return doubled - 9 if doubled > 9 else doubled


def luhn_valid(number: str) -> bool:
    """Whether the digits of `number` pass the Luhn check (spaces and dashes ignored)."""
    digits = [int(ch) for ch in number if ch.isdigit()]
    total = sum(_luhn_term(x, len(digits) - 1 - i) for i, x in enumerate(digits))
    return bool(digits) and total % 10 == 0


def _fill(template: str, characters: str, slot: Callable[[str], bool]) -> str:
    """`template` with the characters for which `slot` holds replaced in order, the rest kept."""
    out, it = [], iter(characters)
    for ch in template:
        out.append(next(it) if slot(ch) else ch)
    return "".join(out)


_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{1,30}")
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _iban(draws: DrawsFor, t: Transform, value: Any, row: Mapping[str, Any] | None) -> str:
    if not isinstance(value, str):
        raise _WrongType("text")
    compact = "".join(ch for ch in value if ch.isalnum())
    d = draws(_seed(value))
    fresh = "".join(
        str(d.below(10)) if ch.isdigit() else d.pick(_UPPER if ch.isupper() else _UPPER.lower())
        for ch in compact
    )
    if _IBAN.fullmatch(compact.upper()):
        country, bban = compact[:2].upper(), fresh[4:].upper()
        fresh = country + iban_check_digits(country, bban) + bban
    return _fill(value, fresh, str.isalnum)


def iban_check_digits(country: str, bban: str) -> str:
    """The two ISO 13616 check digits of an IBAN with this country code and account part."""
    number = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    return f"{98 - int(number) % 97:02d}"


_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?=$|[T ])")


def _date_shift(draws: DrawsFor, t: Transform, value: Any, row: Mapping[str, Any] | None) -> Any:
    if isinstance(value, str) and value in ("infinity", "-infinity"):
        return value
    if isinstance(value, datetime):
        day = value.date()
    elif isinstance(value, date):
        day = value
    elif isinstance(value, str) and (match := _ISO_DATE.match(value)):
        try:
            day = date(*map(int, match.groups()))
        except ValueError:
            raise _WrongType("dates (YYYY-MM-DD…)") from None
    else:
        raise _WrongType("dates, timestamps or ISO 8601 text")
    by = t.option("by")
    if by is not None and (row is None or by not in row):
        raise InvalidRequest(
            f"{t} takes its offset from the row's {by}, and the row given has no {by}",
            hint="pass the whole source row to Masker.mask",
        )
    # keyed by the calendar day (or the `by` value), so a date, its timestamp and its text agree;
    # a NULL `by` falls back to the day
    anchor = row[by] if by is not None and row is not None else None
    seed = _seed(anchor) if anchor is not None else day.isoformat().encode()
    days = int(t.option("days"))
    drawn = draws(seed).below(2 * days)
    offset = -(drawn + 1) if drawn < days else drawn - days + 1  # never 0: the date always moves
    if isinstance(value, date):  # datetimes too: the wall time and zone stay
        return _plus_days(value, offset)
    moved = _plus_days(day, offset)
    return f"{moved.year:04d}-{moved.month:02d}-{moved.day:02d}" + value[10:]


Day = TypeVar("Day", bound=date)


def _plus_days(value: Day, offset: int) -> Day:
    try:
        return value + timedelta(days=offset)
    except OverflowError:  # near year 1 or 9999: move the other way
        return value - timedelta(days=offset)


_DOMAIN = Option(
    "domain",
    "str",
    "the reserved domain of every masked address "
    "(default: example.com, example.net or example.org, as the key picks)",
    check=_reserved_domain,
)
_UNIQUE = Option(
    "unique",
    "bool",
    f"embed {UNIQUE_BITS} bits of keyed hash, so distinct addresses stay distinct (for a unique column)",
    default=False,
)

KINDS: Mapping[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("email", "a realistic address on a reserved domain", _email, (_DOMAIN, _UNIQUE)),
        Kind("name", "a person's full name", _name),
        Kind("first_name", "a given name", _first_name),
        Kind("last_name", "a family name", _last_name),
        Kind("address", "a street line (number, street, type)", _address),
        Kind("phone", "an E.164 number in NANP's fictional 555-01XX range", _phone),
        Kind(
            "card_number",
            "digits replaced, same length and layout, valid Luhn check digit",
            _card_number,
            (
                Option("keep_first", "int", "leading digits kept (the issuer's BIN)", 0, 0, 6),
                Option("keep_last", "int", "trailing digits kept", 0, 0, 4),
            ),
        ),
        Kind("iban", "same country and layout, new account, valid check digits", _iban),
        Kind(
            "date_shift",
            "moved by a keyed number of days within ±days (never 0)",
            _date_shift,
            (
                Option("days", "int", "the largest shift, in days", 30, 1, 3650),
                Option(
                    "by",
                    "str",
                    "a column of the same table whose value picks the offset, so one row's (or one "
                    "user's) dates move together and the intervals between them hold",
                    check=_column_name,
                    shapes_output=False,
                ),
            ),
            writes=frozenset({"date"}),
            drawn=False,
        ),
        Kind(
            "hash",
            "keyed HMAC-SHA256, hex",
            _hash,
            (Option("length", "int", f"hex digits kept ({UNIQUE_HEX}+ for a unique column)", 32, 8, 64),),
        ),
        Kind("null", "NULL", _null, writes=None, drawn=False),
        Kind(
            "constant",
            "one value for every row",
            _constant,
            (Option("value", "scalar", "the value every row gets", required=True),),
            writes=None,
            drawn=False,
        ),
        Kind("keep", "copied unchanged", _keep, writes=None, masks=False, drawn=False),
        Kind(
            "redact",
            "the same number of one character",
            _redact,
            (Option("char", "str", "the character", "x", check=_single_character),),
            drawn=False,
        ),
    )
}

KEEP = Transform("keep")
"""What a column without a rule gets: copied unchanged."""
