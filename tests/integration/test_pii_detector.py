"""The value detector against a real PostgreSQL: a sample of each text column flags what its name
hides; nothing but the kind and the share leaves the check."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from conveyor.data import clone as cloning
from conveyor.data.service import sampler, suspects
from tests.conftest import _pg_connect, drop_pg_database, make_pg_database

pytestmark = pytest.mark.integration


@pytest.fixture
def source(pg_available: bool) -> Iterator[str]:
    url, name = make_pg_database()
    with _pg_connect(url) as conn:
        conn.execute(
            "CREATE TABLE orders "
            "(id int PRIMARY KEY, contact text, paid_with varchar(40), note text, total numeric)"
        )
        conn.execute(
            "INSERT INTO orders SELECT g, 'buyer' || g || '@mail.example', "
            "CASE WHEN g % 2 = 0 THEN '4111 1111 1111 1111' ELSE '5500 0000 0000 0004' END, "
            "'left at the door', g * 1.5 FROM generate_series(1, 300) g"
        )
    try:
        yield url
    finally:
        drop_pg_database(name)


def test_a_sample_of_each_text_column_flags_what_its_name_hides(source: str) -> None:
    catalog = cloning.inspect(source)
    unreviewed = [f"orders.{c.name}" for c in catalog.tables[0].columns]
    with sampler(source) as sample:
        found = suspects(catalog, unreviewed, sample)
    assert found == [
        {
            "column": "orders.contact",
            "suggested_rule": "email",
            "why": "100% of 200 sampled values look like e-mail addresses",
        },
        {
            "column": "orders.paid_with",
            "suggested_rule": "card_number",
            "why": "100% of 200 sampled values look like payment card numbers (Luhn-valid)",
        },
    ]
    assert "@mail.example" not in json.dumps(found) and "4111" not in json.dumps(found)
