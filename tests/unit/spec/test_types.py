"""Durations, percentages, sizes and money: what parses, what is printed back, and what is refused."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.spec.types import Duration, Money, Percent, Size, ValueFormatError


class TestDuration:
    @pytest.mark.parametrize(
        ("text", "seconds", "canonical"),
        [
            ("500ms", 0.5, "500ms"),
            ("30s", 30, "30s"),
            ("5m", 300, "5m"),
            ("1h", 3600, "1h"),
            ("1h30m", 5400, "1h30m"),
            ("90m", 5400, "1h30m"),
            ("24h", 86400, "1d"),
            ("7d", 604800, "7d"),
            ("2w", 1209600, "14d"),
            ("1y", 31536000, "1y"),
            ("0s", 0, "0s"),
            ("1d2h3m4s5ms", 93784.005, "1d2h3m4s5ms"),
        ],
    )
    def test_accepted_spellings(self, text: str, seconds: float, canonical: str) -> None:
        duration = Duration.parse(text)
        assert duration.seconds == seconds
        assert str(duration) == canonical

    @pytest.mark.parametrize("text", ["5 minutes", "5", "five", "-5m", "5min", "", "1.5h", "5M", "m"])
    def test_refused_spellings(self, text: str) -> None:
        with pytest.raises(ValueFormatError) as caught:
            Duration.parse(text)
        assert caught.value.message == f"'{text}' is not a duration"
        assert caught.value.hint == "write it like 5m, 1h30m or 7d"

    def test_numbers_and_other_types_are_refused(self) -> None:
        with pytest.raises(ValueFormatError, match="5 is not a duration"):
            Duration.parse(5)
        with pytest.raises(ValueFormatError, match="expected a duration, got null"):
            Duration.parse(None)

    def test_ordering_and_equality(self) -> None:
        assert Duration.parse("90m") == Duration.parse("1h30m") == Duration.of(hours=1, minutes=30)
        assert Duration.parse("5m") < Duration.parse("1h")
        assert len({Duration.parse("1h"), Duration.parse("60m")}) == 1
        assert repr(Duration.parse("2w")) == "Duration('14d')"

    @given(st.integers(min_value=0, max_value=10**13))
    def test_canonical_text_parses_back_to_the_same_value(self, milliseconds: int) -> None:
        duration = Duration(milliseconds)
        assert Duration.parse(str(duration)) == duration
        assert str(Duration.parse(str(duration))) == str(duration)

    @given(
        st.lists(st.integers(min_value=0, max_value=999), min_size=7, max_size=7),
        st.sets(st.sampled_from(["y", "w", "d", "h", "m", "s", "ms"]), min_size=1),
    )
    def test_any_written_combination_means_the_sum_of_its_parts(
        self, amounts: list[int], units: set[str]
    ) -> None:
        order = ["y", "w", "d", "h", "m", "s", "ms"]
        size = {
            "y": 31_536_000_000,
            "w": 604_800_000,
            "d": 86_400_000,
            "h": 3_600_000,
            "m": 60_000,
            "s": 1000,
            "ms": 1,
        }
        chosen = [unit for unit in order if unit in units]
        text = "".join(f"{amounts[i]}{unit}" for i, unit in enumerate(chosen))
        assert Duration.parse(text).milliseconds == sum(
            amounts[i] * size[unit] for i, unit in enumerate(chosen)
        )


class TestPercent:
    @pytest.mark.parametrize(
        ("text", "value", "canonical"),
        [
            ("1%", 1, "1%"),
            ("0.1%", 0.1, "0.1%"),
            ("99.9%", 99.9, "99.9%"),
            ("12.5%", 12.5, "12.5%"),
            ("100%", 100, "100%"),
            ("5.0%", 5, "5%"),
        ],
    )
    def test_accepted(self, text: str, value: float, canonical: str) -> None:
        percent = Percent.parse(text)
        assert (percent.value, str(percent)) == (value, canonical)
        assert percent.fraction == pytest.approx(value / 100)

    @pytest.mark.parametrize(
        ("given_value", "message", "hint"),
        [
            ("101%", "'101%' is more than 100%", "a percentage is between 0% and 100%"),
            (1, "1 is not a percentage", "add a % sign: 1%"),
            ("abc", "'abc' is not a percentage", "write it like 1%, 12.5% or 99.9%"),
            ("-1%", "'-1%' is not a percentage", "write it like 1%, 12.5% or 99.9%"),
        ],
    )
    def test_refused(self, given_value: object, message: str, hint: str) -> None:
        with pytest.raises(ValueFormatError) as caught:
            Percent.parse(given_value)
        assert (caught.value.message, caught.value.hint) == (message, hint)

    @given(st.decimals(min_value=0, max_value=100, places=3))
    def test_round_trip(self, number: Decimal) -> None:
        percent = Percent(number)
        assert Percent.parse(str(percent)) == percent


class TestSize:
    @pytest.mark.parametrize(
        ("text", "size_bytes", "canonical"),
        [
            ("2GB", 2 * 1024**3, "2GB"),
            ("10GB", 10 * 1024**3, "10GB"),
            ("1TB", 1024**4, "1TB"),
            ("1024MB", 1024**3, "1GB"),
            ("1gb", 1024**3, "1GB"),
            ("100B", 100, "100B"),
        ],
    )
    def test_accepted(self, text: str, size_bytes: int, canonical: str) -> None:
        size = Size.parse(text)
        assert (size.bytes, str(size)) == (size_bytes, canonical)

    @pytest.mark.parametrize("text", ["2 gigs", "1.5GB", "GB", "-1GB"])
    def test_refused(self, text: str) -> None:
        with pytest.raises(ValueFormatError, match="is not a size"):
            Size.parse(text)

    @given(st.integers(min_value=0, max_value=2**60))
    def test_round_trip(self, size_bytes: int) -> None:
        assert Size.parse(str(Size(size_bytes))) == Size(size_bytes)


class TestMoney:
    @pytest.mark.parametrize(
        ("given_value", "canonical"),
        [
            (300, "$300"),
            ("$300", "$300"),
            ("300", "$300"),
            ("$2,000", "$2000"),
            (49.5, "$49.50"),
            ("$0.99", "$0.99"),
        ],
    )
    def test_accepted(self, given_value: object, canonical: str) -> None:
        assert str(Money.parse(given_value)) == canonical

    @pytest.mark.parametrize("given_value", ["300 dollars", "€300", "$-5", -5, "$3.001"])
    def test_refused(self, given_value: object) -> None:
        with pytest.raises(ValueFormatError, match="is not an amount of money"):
            Money.parse(given_value)

    def test_money_compares_by_amount(self) -> None:
        assert Money.parse("$300") == Money.parse(300) < Money.parse("$2000")
