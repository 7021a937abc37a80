"""Unreviewed columns that look personal, by name or by a sample of their values, are flagged with a
rule to start from and why."""

from __future__ import annotations

from conveyor.data.catalog import Catalog, CatalogColumn, CatalogTable
from conveyor.data.service import suspects

USERS = CatalogTable(
    "public",
    "users",
    (
        CatalogColumn("id", "bigint", "int8", nullable=False),
        CatalogColumn("contact_email", "text", "text"),
        CatalogColumn("date_of_birth", "date", "date"),
        CatalogColumn("home_street", "text", "text"),
        CatalogColumn("plan", "text", "text"),
        CatalogColumn("created_at", "timestamp with time zone", "timestamptz"),
    ),
)


def test_personal_looking_names_are_flagged_and_the_rest_left_alone() -> None:
    unreviewed = [f"users.{c.name}" for c in USERS.columns]
    assert suspects(Catalog((USERS,)), unreviewed) == [
        {"column": "users.contact_email", "suggested_rule": "email", "why": "its name looks personal"},
        {"column": "users.date_of_birth", "suggested_rule": "date_shift", "why": "its name looks personal"},
        {"column": "users.home_street", "suggested_rule": "address", "why": "its name looks personal"},
    ]


def test_values_flag_a_column_its_name_hides_and_only_text_columns_are_sampled() -> None:
    notes = CatalogTable(
        "public",
        "orders",
        (
            CatalogColumn("reference", "text", "text"),
            CatalogColumn("contact", "character varying(200)", "varchar"),
            CatalogColumn("total", "numeric(10,2)", "numeric"),
        ),
    )
    values = {
        "reference": [f"ORD-{n:06d}" for n in range(50)],
        "contact": [f"buyer{n}@shop.example" for n in range(40)] + [None] * 5 + ["n/a"] * 10,
        "total": ["should never be read"],
    }
    asked: list[str] = []

    def sample(table: CatalogTable, column: str) -> list[str | None]:
        asked.append(column)
        return list(values[column])

    unreviewed = [f"orders.{c.name}" for c in notes.columns]
    assert suspects(Catalog((notes,)), unreviewed, sample) == [
        {
            "column": "orders.contact",
            "suggested_rule": "email",
            "why": "80% of 50 sampled values look like e-mail addresses",
        }
    ]
    assert asked == ["reference", "contact"]
