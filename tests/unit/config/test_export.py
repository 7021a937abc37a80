"""Exports: a .env file reads back to the same values; JSON and tfvars keep types."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from conveyor.config.export import export, parse_dotenv

names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True)
scalars = st.one_of(st.text(max_size=20), st.integers(-1000, 10**6), st.booleans())


@given(st.dictionaries(names, scalars, max_size=8))
def test_a_dotenv_export_reads_back_to_the_same_text(values: dict[str, object]) -> None:
    expected = {k: ("true" if v is True else "false" if v is False else str(v)) for k, v in values.items()}
    assert parse_dotenv(export(values, "dotenv")) == expected  # type: ignore[arg-type]


@given(st.dictionaries(names, scalars, max_size=8))
def test_json_keeps_types(values: dict[str, object]) -> None:
    assert json.loads(export(values, "json")) == values  # type: ignore[arg-type]


def test_tfvars_quotes_strings_and_escapes_interpolation() -> None:
    text = export({"REGION": "eu-west-1", "POOL": 20, "ON": True, "TPL": "${var}"}, "tfvars")
    assert text == 'ON = true\nPOOL = 20\nREGION = "eu-west-1"\nTPL = "$${var}"\n'
