"""The synthetic generator: same seed → same rows; keys, NOT NULL, unique constraints and lengths hold."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.data.catalog import Catalog, CatalogColumn, CatalogForeignKey, CatalogTable, CatalogUnique
from conveyor.data.synthetic import SeedRefused, column_generator, generate
from conveyor.errors import InvalidRequest


def col(name: str, base: str, **kw: object) -> CatalogColumn:
    return CatalogColumn(name, kw.pop("type", base), base, **kw)  # type: ignore[arg-type]


CUSTOMERS = CatalogTable(
    "public",
    "customers",
    (
        col("id", "int8", nullable=False, default="nextval('customers_id_seq'::regclass)"),
        col("email", "varchar", nullable=False, max_length=40),
        col("first_name", "text", nullable=False),
        col("phone", "varchar", max_length=20),
        col("birth_date", "date"),
        col("balance", "numeric", precision=6, scale=2, nullable=False),
        col("code", "bpchar", max_length=2, nullable=False),
        col("tier", "tier", enum=("gold", "silver"), nullable=False),
        col("created_at", "timestamptz", nullable=False),
    ),
    ("id",),
    (CatalogUnique("customers_pkey", ("id",), primary=True), CatalogUnique("customers_code", ("code",))),
)
ORDERS = CatalogTable(
    "public",
    "orders",
    (
        col("id", "int4", nullable=False, identity=True),
        col("customer_id", "int8", nullable=False),
        col("parent_id", "int4"),
        col("total", "numeric", precision=10, scale=2, nullable=False),
        col("note", "text"),
    ),
    ("id",),
    (CatalogUnique("orders_pkey", ("id",), primary=True),),
    (
        CatalogForeignKey("orders_customer", ("customer_id",), "customers", ("id",)),
        CatalogForeignKey("orders_parent", ("parent_id",), "orders", ("id",)),
    ),
)
TAGS = CatalogTable(
    "public",
    "order_tags",
    (col("order_id", "int4", nullable=False), col("tag", "text", nullable=False)),
    ("order_id", "tag"),
    (CatalogUnique("order_tags_pkey", ("order_id", "tag"), primary=True),),
    (CatalogForeignKey("tags_order", ("order_id",), "orders", ("id",)),),
)
SHOP = Catalog((TAGS, ORDERS, CUSTOMERS))


def rows(catalog: Catalog, count: int, seed: int) -> dict[str, list[dict[str, object]]]:
    return {
        g.table.ref: [dict(zip(g.columns, r, strict=True)) for r in g.rows]
        for g in generate(catalog, count, seed)
    }


@given(st.integers(0, 2**32), st.integers(1, 60))
@settings(max_examples=25)
def test_the_same_seed_gives_the_same_rows_and_every_constraint_holds(seed: int, count: int) -> None:
    first = rows(SHOP, count, seed)
    assert first == rows(SHOP, count, seed)
    customers, orders = first["customers"], first["orders"]
    assert [c["id"] for c in customers] == list(range(1, count + 1))
    ids = {c["id"] for c in customers}
    assert all(o["customer_id"] in ids for o in orders)
    order_ids = {o["id"] for o in orders}
    assert all(o["parent_id"] is None or o["parent_id"] in order_ids for o in orders)
    assert all(t["order_id"] in order_ids for t in first["order_tags"])
    keys = [(t["order_id"], t["tag"]) for t in first["order_tags"]]
    assert len(keys) == len(set(keys))
    codes = [c["code"] for c in customers]
    assert len(codes) == len(set(codes)) and all(len(str(code)) <= 2 for code in codes)
    for c in customers:
        assert (
            c["email"] and len(str(c["email"])) <= 40 and str(c["email"]).split("@")[1].startswith("example.")
        )
        assert c["first_name"] and c["tier"] in ("gold", "silver")
        assert isinstance(c["balance"], Decimal) and abs(c["balance"]) < Decimal("10000")
        assert isinstance(c["created_at"], datetime) and c["created_at"].year <= 2025
        assert c["phone"] is None or "55501" in str(c["phone"])


def test_another_seed_gives_other_rows() -> None:
    assert rows(SHOP, 20, 1) != rows(SHOP, 20, 2)


def test_a_birth_date_is_an_adults() -> None:
    births = [c["birth_date"] for c in rows(SHOP, 50, 3)["customers"] if c["birth_date"] is not None]
    assert births and all(isinstance(b, date) and 1930 <= b.year <= 2007 for b in births)


class TestRefusals:
    def test_a_not_null_column_of_an_unknown_type_names_the_column_and_the_fix(self) -> None:
        table = CatalogTable("public", "shapes", (col("area", "polygon", nullable=False),))
        with pytest.raises(SeedRefused) as caught:
            list(generate(Catalog((table,)), 5, 0))
        assert "shapes.area" in caught.value.detail and "default" in (caught.value.hint or "")

    def test_a_not_null_self_reference_has_no_first_row(self) -> None:
        table = CatalogTable(
            "public", "nodes", (col("id", "int4", nullable=False), col("up", "int4", nullable=False)),
            ("id",),
            foreign_keys=(CatalogForeignKey("up", ("up",), "nodes", ("id",)),),
        )  # fmt: skip
        with pytest.raises(SeedRefused, match="references itself"):
            list(generate(Catalog((table,)), 3, 0))

    def test_zero_rows_is_refused(self) -> None:
        with pytest.raises(InvalidRequest):
            list(generate(SHOP, 0, 0))


@pytest.mark.parametrize(
    ("name", "base", "check"),
    [
        ("email", "text", lambda v: "@example." in v),
        ("mobile_phone", "text", lambda v: v.startswith("+1")),
        ("city", "varchar", lambda v: isinstance(v, str) and v),
        ("age", "int4", lambda v: 18 <= v <= 90),
        ("quantity", "int2", lambda v: 1 <= v <= 20),
        ("website", "text", lambda v: v.startswith("https://")),
    ],
    ids=["email", "phone", "city", "age", "quantity", "url"],
)
def test_column_names_pick_realistic_values(name: str, base: str, check: object) -> None:
    from conveyor.data.synthetic import _context

    gen = column_generator(col(name, base))
    assert gen is not None
    ctx = _context(1, "t")
    assert all(check(gen(ctx, i)) for i in range(20))  # type: ignore[operator]
