"""Unreviewed columns whose names look personal are flagged with a rule to start from."""

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
        {"column": "users.contact_email", "suggested_rule": "email"},
        {"column": "users.date_of_birth", "suggested_rule": "date_shift"},
        {"column": "users.home_street", "suggested_rule": "address"},
    ]
