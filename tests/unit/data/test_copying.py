"""COPY text fields: escaping round-trips, and a masked line changes only its ruled fields."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from conveyor.data.copying import ColumnMask, LineMasker, escape, unescape
from conveyor.data.masking import Masker, Transform

KEY = "unit-test-masking-key-0123456789"


@given(st.text())
def test_escape_then_unescape_gives_the_value_back(value: str) -> None:
    field = escape(value)
    assert "\t" not in field and "\n" not in field
    assert unescape(field) == value


def test_postgres_escapes_are_read() -> None:
    assert unescape("\\N") is None
    assert unescape("a\\tb\\\\c\\nd\\101\\x42") == "a\tb\\c\ndAB"


def test_a_masked_line_changes_only_its_ruled_fields_and_keeps_nulls() -> None:
    masker = Masker(KEY)
    masks = (
        ColumnMask(1, "email", Transform.of("email", unique=True)),
        ColumnMask(2, "name", Transform("name")),
    )
    lines = LineMasker(masker, ("id", "email", "name", "city"), masks)
    out = lines.chunk("7\tann@corp.com\tAnn Lee\tOslo\n8\t\\N\tBob\\tTab\tRome\n").split("\n")
    first, second = out[0].split("\t"), out[1].split("\t")
    assert first[0] == "7" and first[3] == "Oslo"
    assert first[1] == masker.mask(Transform.of("email", unique=True), "ann@corp.com")
    assert first[2] == masker.mask(Transform("name"), "Ann Lee")
    assert second[1] == "\\N" and second[2] == masker.mask(Transform("name"), "Bob\tTab")


def test_date_shift_by_another_column_reads_the_whole_row() -> None:
    masker = Masker(KEY)
    rule = Transform.of("date_shift", by="user_id")
    lines = LineMasker(masker, ("user_id", "day"), (ColumnMask(1, "day", rule),))
    out = lines.chunk("42\t2024-03-01\n42\t2024-05-01\n").split("\n")
    row = {"user_id": "42", "day": "2024-03-01"}
    assert out[0].split("\t")[1] == masker.mask(rule, "2024-03-01", row)
