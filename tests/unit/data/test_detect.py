"""The value detector: which personal data a column's sample looks like (property tests)."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from conveyor.data.detect import MIN_SAMPLE, classify, iban_valid, luhn_valid

_LOCAL = st.text(string.ascii_lowercase + string.digits + "._", min_size=1, max_size=12).filter(
    lambda s: s[0] not in "._"
)
_EMAILS = st.builds(
    lambda user, host: f"{user}@{host}.example",
    _LOCAL,
    st.text(string.ascii_lowercase, min_size=2, max_size=10),
)


def _with_luhn_digit(body: str) -> str:
    return next(body + d for d in string.digits if luhn_valid(body + d))


_CARDS = st.text(string.digits, min_size=15, max_size=15).map(_with_luhn_digit)


@given(st.lists(_EMAILS, min_size=MIN_SAMPLE, max_size=40))
def test_a_column_of_email_addresses_is_email(emails: list[str]) -> None:
    found = classify(emails)
    assert found is not None and found.kind.name == "email" and found.matched == len(emails)


@given(st.lists(_CARDS, min_size=MIN_SAMPLE, max_size=40))
def test_luhn_valid_card_numbers_are_cards_not_phone_numbers(cards: list[str]) -> None:
    found = classify([f"{c[:4]} {c[4:8]} {c[8:12]} {c[12:]}" for c in cards])
    assert found is not None and found.kind.name == "card_number"


@given(st.lists(st.integers(min_value=0, max_value=10**8), min_size=MIN_SAMPLE, max_size=40))
def test_ids_and_amounts_are_not_personal(numbers: list[int]) -> None:
    assert classify([str(n) for n in numbers]) is None
    assert classify([f"{n / 100:.2f}" for n in numbers]) is None


@given(st.lists(st.dates().map(str), min_size=MIN_SAMPLE, max_size=40))
def test_dates_are_not_phone_numbers(dates: list[str]) -> None:
    assert classify(dates) is None


@given(st.lists(st.one_of(st.none(), st.just(""), _EMAILS), max_size=MIN_SAMPLE - 1))
def test_too_few_values_say_nothing(values: list[str | None]) -> None:
    assert classify(values) is None


@given(st.lists(_EMAILS, min_size=5, max_size=30), st.data())
def test_a_minority_of_addresses_does_not_flag_a_column(emails: list[str], data: st.DataObject) -> None:
    words = st.text(string.ascii_letters + " ", min_size=1).filter(str.strip)
    others = data.draw(st.lists(words, min_size=len(emails) + 1, max_size=len(emails) + 30))
    found = classify([*emails, *others])
    assert found is None or found.kind.name != "email"


def test_other_kinds_and_their_rules() -> None:
    samples = {
        "phone": [
            "+1 202 555 0143",
            "+44 20 7946 0958",
            "(202) 555-0186",
            "+33 1 70 36 39 50",
            "020 7946 0000",
        ],
        "ip_address": ["10.0.0.1", "192.168.1.20", "2001:db8::1", "172.16.4.2", "8.8.8.8"],
        "iban": ["GB82WEST12345698765432", "DE89370400440532013000", "FR1420041010050500013M02606"] * 2,
        "ssn": ["123-45-6789", "219-09-9999", "078-05-1120", "536-22-1234", "401-12-3456"],
    }
    rules = {"phone": "phone", "ip_address": "hash", "iban": "iban", "ssn": "hash"}
    for kind, values in samples.items():
        found = classify(values)
        assert found is not None and found.kind.name == kind, (kind, found)
        assert found.kind.rule == rules[kind]


def test_the_checks_behind_cards_and_ibans() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82WEST12345698765432") and not iban_valid("GB83WEST12345698765432")
