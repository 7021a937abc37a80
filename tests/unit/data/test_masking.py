"""Masking transforms: deterministic under one key, unrelated under another, never the input back."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from conveyor.data.masking import (
    KINDS,
    RESERVED_DOMAINS,
    UNIQUE_HEX,
    Masker,
    Transform,
    for_unique,
    unique_safe,
)
from conveyor.errors import InvalidRequest

KEY = "conveyor-unit-test-masking-key"
MASKER = Masker(KEY)
T = Transform.of

GOLDEN: list[tuple[Any, Any, Any]] = [
    ("email", "maria.keller@gmail.com", "ayesha.becker9126@example.org"),
    (
        {"transform": "email", "unique": True},
        "maria.keller@gmail.com",
        "elena.garcia.fa1143043098b6e918dac121@example.net",
    ),
    (
        {"transform": "email", "domain": "staging.test"},
        "maria.keller@gmail.com",
        "chloe.ibrahim8241@staging.test",
    ),
    ("name", "Maria Keller", "Andrei Brennan"),
    ("first_name", "Maria", "Rosa"),
    ("last_name", "Keller", "Jensen"),
    ("address", "221B Baker Street", "2047 Laurel Drive"),
    ("phone", "+44 20 7946 0958", "+12695550102"),
    ("card_number", "4111 1111 1111 1111", "4626 2029 5848 8395"),
    ({"transform": "card_number", "keep_first": 6, "keep_last": 4}, "4111111111111111", "4111112495151111"),
    ("iban", "DE89 3704 0044 0532 0130 00", "DE57 0692 1375 4415 8416 20"),
    ("date_shift", date(1990, 5, 17), date(1990, 4, 30)),
    ({"transform": "date_shift", "days": 365}, "1990-05-17 10:30:00+02", "1990-06-18 10:30:00+02"),
    ("hash", "maria.keller@gmail.com", "25318708d2c14ec056cf12f19d7cc5d0"),
    ({"transform": "hash", "length": 12}, 42, "dff24de7e704"),
    ("redact", "call me on Tuesday", "xxxxxxxxxxxxxxxxxx"),
    ("constant:n/a", "secret", "n/a"),
    ("null", "secret", None),
    ("keep", "not personal", "not personal"),
]


def transform(rule: Any) -> Transform:
    if isinstance(rule, str):
        if rule.startswith("constant:"):
            return T("constant", value=rule.removeprefix("constant:"))
        return Transform(rule)
    return Transform(rule["transform"], tuple((k, v) for k, v in rule.items() if k != "transform"))


def normal(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def luhn(number: str) -> bool:
    digits = [int(ch) for ch in reversed(number) if ch.isdigit()]
    total = sum(d if i % 2 == 0 else (2 * d if d < 5 else 2 * d - 9) for i, d in enumerate(digits))
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    compact = iban.replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


EMAIL = re.compile(r"(?P<local>[a-z]+\.[a-z]+(\d{4}|\.[0-9a-f]{24}))@(?P<domain>[a-z0-9.-]+)")
DRAWN = [
    T("email"),
    T("email", unique=True),
    T("name"),
    T("first_name"),
    T("last_name"),
    T("address"),
    T("phone"),
    T("hash"),
    T("hash", length=8),
]
FORMATTED = [T("card_number"), T("card_number", keep_first=6, keep_last=4), T("iban")]
KEYED = [*DRAWN, *FORMATTED, T("date_shift"), T("date_shift", days=365)]

keys = st.binary(min_size=16, max_size=48)
texts = st.text(min_size=1, max_size=40)
words = st.text(st.characters(categories=["L", "Nd"]) | st.sampled_from(" .-@+"), min_size=6, max_size=40)
cards = st.from_regex(r"[0-9]{12,19}", fullmatch=True)
grouped_cards = cards.map(lambda digits: " ".join(digits[i : i + 4] for i in range(0, len(digits), 4)))
ibans = st.builds(
    lambda country, check, bban: f"{country}{check:02d}{bban}",
    st.from_regex(r"[A-Z]{2}", fullmatch=True),
    st.integers(0, 99),
    st.from_regex(r"[A-Z0-9]{11,26}", fullmatch=True),
)
days = st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 1, 1))


def sample(t: Transform) -> st.SearchStrategy[Any]:
    if t.name == "card_number":
        return cards
    if t.name == "iban":
        return ibans
    if t.name == "date_shift":
        return days
    return texts


class TestGolden:
    @pytest.mark.parametrize(
        ("rule", "value", "expected"), GOLDEN, ids=[str(transform(g[0])) for g in GOLDEN]
    )
    def test_stable_realistic_output(self, rule: Any, value: Any, expected: Any) -> None:
        assert MASKER.mask(transform(rule), value) == expected

    def test_every_transform_has_a_golden_value(self) -> None:
        assert {transform(rule).name for rule, _, _ in GOLDEN} == set(KINDS)

    def test_key_fingerprint_is_stable_and_not_the_key(self) -> None:
        assert MASKER.fingerprint == "2ad07874d8ad"
        assert KEY not in repr(MASKER)


class TestDeterminism:
    @given(key=keys, value=texts, t=st.sampled_from(DRAWN))
    def test_same_key_and_value_give_the_same_output(self, key: bytes, value: str, t: Transform) -> None:
        assert Masker(key).mask(t, value) == Masker(key).mask(t, value)

    @given(data=st.data(), key=keys, t=st.sampled_from(KEYED))
    def test_same_output_in_every_table_and_run(self, data: st.DataObject, key: bytes, t: Transform) -> None:
        value = data.draw(sample(t))
        in_users = Masker(key).mask(t, value, {"id": 1})
        in_orders = Masker(key).mask(t, value, {"id": 2, "user_id": 7})
        assert in_users == in_orders

    @given(
        data=st.data(),
        key=keys,
        other=keys,
        t=st.sampled_from(KEYED),
    )
    def test_another_key_gives_other_outputs(
        self, data: st.DataObject, key: bytes, other: bytes, t: Transform
    ) -> None:
        assume(key != other)
        values = data.draw(st.lists(sample(t), min_size=20, max_size=20, unique=True))
        one, two = Masker(key), Masker(other)
        assert [one.mask(t, v) for v in values] != [two.mask(t, v) for v in values]

    @given(value=texts)
    def test_transforms_with_other_options_are_unrelated(self, value: str) -> None:
        assert MASKER.mask(T("hash"), value) != MASKER.mask(T("hash", length=64), value)[:32]

    def test_typed_and_text_values_mask_alike(self) -> None:
        assert MASKER.mask(T("hash"), 42) == MASKER.mask(T("hash"), "42")
        assert MASKER.mask(T("date_shift"), date(2024, 2, 29)) == date.fromisoformat(
            MASKER.mask(T("date_shift"), "2024-02-29")
        )

    @pytest.mark.parametrize("t", [*KEYED, T("redact"), T("null"), T("keep")], ids=str)
    def test_null_stays_null(self, t: Transform) -> None:
        assert MASKER.mask(t, None) is None


class TestNoLeak:
    @given(value=words, t=st.sampled_from(DRAWN))
    def test_output_never_contains_the_input(self, value: str, t: Transform) -> None:
        source = normal(value)
        assume(len(source) >= 6)
        # the reserved domains are in every address: an input inside them cannot be avoided
        assume(not any(source in normal(domain) for domain in RESERVED_DOMAINS))
        assert source not in normal(str(MASKER.mask(t, value)))

    @given(value=st.emails(), t=st.sampled_from([T("email"), T("email", unique=True)]))
    def test_an_address_loses_its_local_part_and_domain(self, value: str, t: Transform) -> None:
        domain = value.rpartition("@")[2].lower()
        out = MASKER.mask(t, value)
        assert out.rpartition("@")[2] in RESERVED_DOMAINS
        assert normal(value) not in normal(out)
        if not any(domain in reserved for reserved in RESERVED_DOMAINS):
            assert domain not in out

    @given(value=cards, t=st.sampled_from(FORMATTED[:2]))
    def test_card_number_never_comes_back(self, value: str, t: Transform) -> None:
        assert MASKER.mask(t, value) != value

    @given(value=days, t=st.sampled_from([T("date_shift"), T("date_shift", days=1)]))
    def test_date_always_moves(self, value: date, t: Transform) -> None:
        assert MASKER.mask(t, value) != value

    def test_error_for_a_wrong_type_never_shows_the_value(self) -> None:
        with pytest.raises(InvalidRequest) as error:
            MASKER.mask(T("card_number"), 4111111111111111)
        assert "4111" not in error.value.detail
        assert "int" in error.value.detail


class TestEmail:
    @given(value=texts, t=st.sampled_from([T("email"), T("email", unique=True)]))
    def test_valid_address_on_a_reserved_domain(self, value: str, t: Transform) -> None:
        match = EMAIL.fullmatch(MASKER.mask(t, value))
        assert match is not None
        assert match["domain"] in RESERVED_DOMAINS
        assert len(match["local"]) <= 64

    @given(value=texts)
    def test_chosen_domain_must_be_reserved_and_is_used(self, value: str) -> None:
        assert MASKER.mask(T("email", domain="mail.example.com"), value).endswith("@mail.example.com")

    @pytest.mark.parametrize("domain", ["gmail.com", "example.co", "Example.com", "exa mple.com"])
    def test_real_domain_is_refused(self, domain: str) -> None:
        with pytest.raises(InvalidRequest, match="domain"):
            T("email", domain=domain)


class TestCardNumber:
    @given(value=cards, keep_first=st.integers(0, 6), keep_last=st.integers(0, 4))
    def test_luhn_valid_with_the_same_length(self, value: str, keep_first: int, keep_last: int) -> None:
        out = MASKER.mask(T("card_number", keep_first=keep_first, keep_last=keep_last), value)
        assert len(out) == len(value) and out.isdigit()
        assert luhn(out)

    @given(value=cards, keep_last=st.integers(1, 4))
    def test_keeps_the_last_digits_only_when_asked(self, value: str, keep_last: int) -> None:
        assume(len(value) >= keep_last + 6)
        assert MASKER.mask(T("card_number", keep_last=keep_last), value)[-keep_last:] == value[-keep_last:]

    @given(value=grouped_cards)
    def test_layout_kept(self, value: str) -> None:
        out = MASKER.mask(T("card_number"), value)
        assert [ch.isdigit() for ch in out] == [ch.isdigit() for ch in value]
        assert luhn(out)

    def test_short_number_keeps_nothing(self) -> None:
        # 10 digits leave fewer than 6 to replace after keeping 6 + 4: every digit is replaced
        assert MASKER.mask(T("card_number", keep_first=6, keep_last=4), "4111111111") == "3270087434"


class TestIban:
    @given(value=ibans)
    def test_valid_iban_in_the_same_country(self, value: str) -> None:
        out = MASKER.mask(T("iban"), value)
        assert out[:2] == value[:2] and len(out) == len(value)
        assert iban_valid(out)

    def test_value_not_shaped_like_an_iban_is_replaced_class_by_class(self) -> None:
        out = MASKER.mask(T("iban"), "acct-1234-XY")
        assert re.fullmatch(r"[a-z]{4}-[0-9]{4}-[A-Z]{2}", out) and out != "acct-1234-XY"


class TestDateShift:
    @given(value=days, limit=st.integers(1, 400))
    def test_within_the_limit(self, value: date, limit: int) -> None:
        moved = MASKER.mask(T("date_shift", days=limit), value)
        assert 1 <= abs((moved - value).days) <= limit

    @given(value=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)))
    def test_date_timestamp_and_text_agree(self, value: datetime) -> None:
        t = T("date_shift")
        as_date = MASKER.mask(t, value.date())
        as_timestamp = MASKER.mask(t, value.replace(tzinfo=UTC))
        as_text = MASKER.mask(t, value.isoformat(sep=" "))
        assert as_timestamp.date() == as_date and as_timestamp.time() == value.time()
        assert as_text == as_date.isoformat() + value.isoformat(sep=" ")[10:]

    @given(user=st.integers(1, 10**9), start=days, length=st.integers(0, 1000))
    def test_by_column_moves_a_rows_dates_together(self, user: int, start: date, length: int) -> None:
        t = T("date_shift", days=90, by="user_id")
        row = {"user_id": user}
        end = start + timedelta(days=length)
        assert MASKER.mask(t, end, row) - MASKER.mask(t, start, row) == timedelta(days=length)

    def test_by_column_needs_the_row(self) -> None:
        with pytest.raises(InvalidRequest, match="user_id"):
            MASKER.mask(T("date_shift", by="user_id"), date(2024, 1, 1))

    def test_infinity_and_the_ends_of_the_calendar(self) -> None:
        assert MASKER.mask(T("date_shift"), "infinity") == "infinity"
        assert MASKER.mask(T("date_shift", days=3650), date.max) < date.max
        assert MASKER.mask(T("date_shift", days=3650), date.min) > date.min

    def test_text_that_is_no_date_is_refused(self) -> None:
        with pytest.raises(InvalidRequest, match="date"):
            MASKER.mask(T("date_shift"), "next tuesday")


class TestUniqueness:
    @given(
        values=st.lists(texts, min_size=2, max_size=300, unique=True),
        t=st.sampled_from([T("email", unique=True), T("hash"), T("hash", length=UNIQUE_HEX), T("keep")]),
    )
    def test_unique_safe_transforms_never_collide(self, values: list[str], t: Transform) -> None:
        assert unique_safe(t)
        assert MASKER.check_unique(t, values) == ()

    def test_check_unique_finds_a_collision(self) -> None:
        values = [f"person {i}" for i in range(200)]  # more people than first names
        collisions = MASKER.check_unique(T("first_name"), values)
        assert collisions
        assert all(len(c.inputs) > 1 and "person" not in c.describe() for c in collisions)

    def test_nulls_never_collide(self) -> None:
        assert MASKER.check_unique(T("null"), ["a", "b", None]) == ()

    @pytest.mark.parametrize(
        ("t", "safe"),
        [
            (T("email"), T("email", unique=True)),
            (T("email", domain="example.test"), T("email", domain="example.test", unique=True)),
            (T("hash", length=8), T("hash", length=UNIQUE_HEX)),
            (T("hash"), T("hash")),
        ],
        ids=str,
    )
    def test_for_unique(self, t: Transform, safe: Transform) -> None:
        assert for_unique(t) == safe and unique_safe(safe)

    @pytest.mark.parametrize(
        "t", [T("first_name"), T("constant", value="x"), T("redact"), T("phone")], ids=str
    )
    def test_for_unique_refuses_what_cannot_be_made_distinct(self, t: Transform) -> None:
        assert not unique_safe(t)
        with pytest.raises(InvalidRequest, match="distinct") as error:
            for_unique(t)
        assert error.value.hint and "hash" in error.value.hint


class TestTransform:
    def test_default_options_compare_equal(self) -> None:
        assert T("card_number") == T("card_number", keep_last=0, keep_first=0)
        assert T("card_number", keep_last=4).to_rule() == {"transform": "card_number", "keep_last": 4}
        assert str(T("card_number", keep_last=4)) == "card_number(keep_last=4)"

    @pytest.mark.parametrize(
        ("name", "options", "detail", "hint"),
        [
            ("emial", {}, "unknown masking transform 'emial'", "did you mean 'email'?"),
            ("email", {"domian": "example.com"}, "email has no option 'domian'", "did you mean 'domain'?"),
            ("name", {"unique": True}, "name has no option 'unique'", "it takes no options"),
            ("card_number", {"keep_last": "4"}, "keep_last of card_number is '4'", "trailing digits"),
            ("card_number", {"keep_last": True}, "whole number from 0 to 4", "trailing digits"),
            ("card_number", {"keep_first": 8}, "whole number from 0 to 6", "leading digits"),
            ("hash", {"length": 4}, "whole number from 8 to 64", "hex digits"),
            ("constant", {}, "constant needs option value", "every row"),
            ("redact", {"char": "ab"}, "exactly one character", "the character"),
            ("date_shift", {"by": "user id"}, "column name", "same table"),
        ],
        ids=lambda v: str(v) if isinstance(v, str) else None,
    )
    def test_bad_transform_is_refused_with_the_fix(
        self, name: str, options: dict[str, Any], detail: str, hint: str
    ) -> None:
        with pytest.raises(InvalidRequest) as error:
            Transform(name, tuple(options.items()))
        assert detail in error.value.detail
        assert error.value.hint is not None and hint in error.value.hint

    def test_short_key_is_refused(self) -> None:
        with pytest.raises(InvalidRequest, match="at least 16") as error:
            Masker("too-short")
        assert error.value.hint is not None and "MASKING_KEY" in error.value.hint
