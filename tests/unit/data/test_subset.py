"""Subset planning: which tables are filtered, in what order, and that the closure covers every reference."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.data.catalog import Catalog, CatalogColumn, CatalogForeignKey, CatalogTable, table_order
from conveyor.data.subset import SubsetProblem, SubsetRule, plan_subset, where_problem
from conveyor.errors import InvalidRequest


def _table(name: str, *parents: str, self_ref: bool = False) -> CatalogTable:
    columns = [CatalogColumn("id", "bigint", "int8", nullable=False)]
    fks = []
    for parent in parents:
        columns.append(CatalogColumn(f"{parent}_id", "bigint", "int8"))
        fks.append(CatalogForeignKey(f"{name}_{parent}_fk", (f"{parent}_id",), parent, ("id",)))
    if self_ref:
        columns.append(CatalogColumn("parent_id", "bigint", "int8"))
        fks.append(CatalogForeignKey(f"{name}_parent_fk", ("parent_id",), name, ("id",)))
    return CatalogTable("public", name, tuple(columns), ("id",), (), tuple(fks))


SHOP = Catalog(
    (
        _table("customers"),
        _table("products"),
        _table("orders", "customers", self_ref=True),
        _table("order_items", "orders", "products"),
        _table("audit_log"),
    )
)


class TestWhereConditions:
    @pytest.mark.parametrize(
        "text",
        [
            "status = 'paid'",
            "created_at > now() - interval '90 days'",
            "lower(email) LIKE '%@example.com' AND id % 10 = 0",
            "pg_catalog.date_trunc('day', created_at) > '2026-01-01'",
        ],
    )
    def test_one_boolean_expression_is_accepted(self, text: str) -> None:
        assert where_problem(text) is None

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("a = 1; DROP TABLE users", "more than one statement"),
            ("a = ", "not valid SQL"),
            ("a = 1 ORDER BY a", "single boolean expression"),
            ("a = 1 UNION SELECT 2", "single boolean expression"),
            ("  ", "empty"),
            ("id IN (SELECT user_id FROM secrets)", "a subquery"),
            ("length(pg_read_file('/etc/hostname')) > 0", "the function pg_read_file()"),
            ("set_config('role', 'postgres', false) = 'x'", "the function set_config()"),
            ("evil.lower(email) = 'x'", "the function lower()"),
            ("id > 5 -- the rest of the statement is gone", "comment"),
        ],
        ids=[
            "second-statement",
            "syntax",
            "order-by",
            "union",
            "empty",
            "subquery",
            "file",
            "role",
            "schema",
            "comment",
        ],
    )
    def test_anything_else_is_refused(self, text: str, problem: str) -> None:
        found = where_problem(text)
        assert found is not None and problem in found

    def test_a_rule_needs_where_or_percent(self) -> None:
        with pytest.raises(InvalidRequest):
            SubsetRule()
        with pytest.raises(InvalidRequest):
            SubsetRule(percent=0)
        assert SubsetRule(percent=10, where="a > 1").describe() == "10% where a > 1"


class TestPlan:
    def test_no_rules_copies_every_table_whole(self) -> None:
        plan = plan_subset(SHOP, {})
        assert plan.empty and plan.seed == () and plan.close == ()
        assert plan.source_of(SHOP.tables[0]) == 'ONLY "public"."customers"'

    def test_a_ruled_table_filters_its_descendants_and_leaves_unrelated_tables_whole(self) -> None:
        plan = plan_subset(SHOP, {"customers": SubsetRule(percent=10)})
        assert set(plan.sources) == {"customers", "orders", "order_items"}
        assert "products" not in plan.sources and "audit_log" not in plan.sources
        seeded = [s for s in plan.seed if s.startswith("CREATE")]
        names = [
            next(t for t in plan.sources if f'"{plan.sources[t]}"' in s.split(" AS ")[0]) for s in seeded
        ]
        assert names == ["customers", "orders", "order_items"]  # parents first
        assert 'hashtextextended(ROW(t."id")::text, 0) % 1000000) < 100000' in seeded[0]
        assert 'EXISTS (SELECT 1 FROM "' in seeded[1]

    def test_the_closure_covers_every_reference_between_filtered_tables_including_self_references(
        self,
    ) -> None:
        plan = plan_subset(SHOP, {"customers": SubsetRule(where="id < 10")})
        assert len(plan.close) == 3  # orders→customers, orders→orders, order_items→orders
        assert all(s.startswith("INSERT INTO") and "NOT EXISTS" in s for s in plan.close)

    def test_a_rule_for_a_table_the_source_lacks_says_which_and_suggests(self) -> None:
        with pytest.raises(SubsetProblem) as caught:
            plan_subset(SHOP, {"customer": SubsetRule(percent=5)})
        assert "customer" in caught.value.detail and caught.value.hint == "did you mean 'customers'?"


@st.composite
def catalogs(draw: st.DrawFn) -> Catalog:
    count = draw(st.integers(1, 7))
    tables = []
    for index in range(count):
        parents = draw(st.lists(st.integers(0, count - 1), max_size=3, unique=True))
        names = [f"t{p}" for p in parents if p != index]
        tables.append(_table(f"t{index}", *names, self_ref=index in parents))
    return Catalog(tuple(tables))


@given(catalogs(), st.data())
def test_every_reference_from_a_filtered_table_into_a_filtered_table_is_closed(
    catalog: Catalog, data: st.DataObject
) -> None:
    ruled = data.draw(st.sets(st.sampled_from([t.ref for t in catalog.tables])))
    plan = plan_subset(catalog, {ref: SubsetRule(percent=50) for ref in ruled})
    assert set(ruled) <= set(plan.sources)
    for table in catalog.tables:
        for fk in table.foreign_keys:
            # a filtered table that references a filtered one: its kept rows pull their parents in
            if table.ref in plan.sources and fk.ref_table in plan.sources:
                parent_temp, child_temp = plan.sources[fk.ref_table], plan.sources[table.ref]
                assert any(
                    s.startswith(f'INSERT INTO "{parent_temp}"') and f'"{child_temp}"' in s
                    for s in plan.close
                )
            # a table copied whole never references a filtered one
            if table.ref not in plan.sources and fk.ref_table != table.ref:
                assert fk.ref_table not in plan.sources


@given(catalogs())
def test_table_order_puts_parents_first_except_inside_a_cycle(catalog: Catalog) -> None:
    order = [t.ref for t in table_order(catalog)]
    assert sorted(order) == sorted(t.ref for t in catalog.tables)
    position = {ref: i for i, ref in enumerate(order)}
    for table in catalog.tables:
        for fk in table.foreign_keys:
            if position[fk.ref_table] > position[table.ref]:
                # only a cycle can put a parent after its child
                assert _reaches(catalog, fk.ref_table, table.ref)


def _reaches(catalog: Catalog, start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        ref = todo.pop()
        if ref == goal:
            return True
        if ref in seen:
            continue
        seen.add(ref)
        table = catalog.table(ref)
        todo += [fk.ref_table for fk in table.foreign_keys] if table else []
    return False
