"""Pure: which personal data a column's values look like, for columns whose names do not say.

A column named `contact` full of e-mail addresses, or `notes` holding card numbers, escapes the
name check in `data.service.suspects`. `classify` looks at a sample of a column's values and names
the kind most of them have, with a masking rule to start from; a person confirms it by declaring
the column in conveyor.yaml (`masking` or `not_sensitive`). Only the kind and the share of the
sample that matched leave this module, never a value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MIN_SAMPLE = 5
"""Fewer non-empty values than this say nothing about a column."""
THRESHOLD = 0.5
"""The share of the sample one kind must reach for the column to be flagged."""

_EMAIL = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ().-]{5,22}[0-9]$")
_DATE_LIKE = re.compile(r"^\d{1,4}[-./]\d{1,2}[-./]\d{1,4}$")
_CARD = re.compile(r"^[0-9][0-9 -]{11,21}[0-9]$")
_IBAN = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$")
_SSN = re.compile(r"^(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}$")


def luhn_valid(digits: str) -> bool:
    """The Luhn check that every payment card number passes."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """ISO 13616's mod-97 check."""
    moved = text[4:] + text[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _is_card(text: str) -> bool:
    digits = _digits(text)
    return bool(_CARD.match(text)) and 13 <= len(digits) <= 19 and luhn_valid(digits)


def _is_phone(text: str) -> bool:
    if not _PHONE.match(text) or _DATE_LIKE.match(text):
        return False
    digits = _digits(text)
    separators = {c for c in text.removeprefix("+") if not c.isdigit()}
    if separators == {"."} and text.count(".") < 2:
        return False  # an amount (10000.00), not 202.555.0143
    # plain digit strings are usually ids or amounts: a phone number has a '+', separators, or
    # the length of a full national number
    return 7 <= len(digits) <= 15 and (text.startswith("+") or bool(separators) or len(digits) >= 10)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_iban(text: str) -> bool:
    compact = text.replace(" ", "").upper()
    return bool(_IBAN.match(compact)) and iban_valid(compact)


@dataclass(frozen=True)
class Kind:
    name: str
    described: str
    rule: str
    """The masking rule a person starts from (a transform's name)."""
    matches: Callable[[str], bool]


# most specific first: a card number also looks like a phone number
KINDS: tuple[Kind, ...] = (
    Kind("email", "e-mail addresses", "email", lambda v: bool(_EMAIL.match(v))),
    Kind("card_number", "payment card numbers (Luhn-valid)", "card_number", _is_card),
    Kind("iban", "IBANs (mod-97 valid)", "iban", _is_iban),
    Kind("ssn", "US social security numbers", "hash", lambda v: bool(_SSN.match(v))),
    Kind("ip_address", "IP addresses", "hash", _is_ip),
    Kind("phone", "phone numbers", "phone", _is_phone),
)


@dataclass(frozen=True)
class Detected:
    """What a column's sample looked like: the kind, how many of the sampled values matched it."""

    kind: Kind
    matched: int
    sampled: int

    @property
    def why(self) -> str:
        share = round(100 * self.matched / self.sampled)
        return f"{share}% of {self.sampled} sampled values look like {self.kind.described}"


def classify(values: Sequence[str | None]) -> Detected | None:
    """The kind most of `values` have, when at least THRESHOLD of the non-empty ones have it."""
    present = [v.strip() for v in values if v is not None and v.strip()]
    if len(present) < MIN_SAMPLE:
        return None
    best: Detected | None = None
    for kind in KINDS:
        matched = sum(1 for v in present if kind.matches(v))
        if matched / len(present) >= THRESHOLD and (best is None or matched > best.matched):
            best = Detected(kind, matched, len(present))
    return best
