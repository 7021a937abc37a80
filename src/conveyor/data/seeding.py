"""Fills an environment's PostgreSQL database with synthetic rows, in one transaction.

`data/service.py` calls `seed_database`; the rows come from the pure generator in `synthetic.py`.
Every table is emptied and refilled in the same transaction, sequences are set past the generated
keys, and foreign keys and unique constraints are checked by PostgreSQL as the rows go in: when
anything fails, the transaction rolls back and the database keeps what it had.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from conveyor.data.catalog import quote_ident, read_catalog
from conveyor.data.synthetic import SeedRefused, generate
from conveyor.migrations.compat import is_bookkeeping
from conveyor.migrations.runner import TABLE as MIGRATIONS_TABLE
from conveyor.resources.postgres import connect


class NothingToSeed(SeedRefused):
    """The database has no tables yet: no release has created its schema."""


def seed_database(url: str, rows: int, seed: int) -> dict[str, Any]:
    """Replace every table's rows with `rows` synthetic rows (fewer where unique keys run out)."""
    import psycopg

    with connect(url) as conn:
        conn.execute("SET client_encoding = 'UTF8'")
        found = read_catalog(conn)
        # the migration history (Conveyor's, and Alembic's version table) is schema, not data:
        # seeding keeps it, so the next release knows what is applied and `alembic current` stays true
        catalog = replace(
            found,
            tables=tuple(t for t in found.tables if t.ref != MIGRATIONS_TABLE and not is_bookkeeping(t.ref)),
        )
        if not catalog.tables:
            raise NothingToSeed(
                "the database has no tables to seed",
                hint="create the schema first (deploy a release whose migrations create it)",
            )
        counts: dict[str, int] = {}
        conn.autocommit = False
        try:
            conn.execute("TRUNCATE " + ", ".join(t.sql for t in catalog.tables) + " RESTART IDENTITY")
            for generated in generate(catalog, rows, seed):
                table = generated.table
                names = ", ".join(quote_ident(c) for c in generated.columns)
                with conn.cursor() as cur, cur.copy(f"COPY {table.sql} ({names}) FROM STDIN") as copy:
                    for row in generated.rows:
                        copy.write_row(row)
                counts[table.ref] = len(generated.rows)
                for column in table.writable:
                    if column.serial:
                        conn.execute(
                            f"SELECT setval(pg_get_serial_sequence(%s, %s), "
                            f"coalesce((SELECT max({quote_ident(column.name)}) FROM {table.sql}), 0) + 1, "
                            "false)",
                            (table.sql, column.name),
                        )
            conn.commit()
        except psycopg.Error as error:
            conn.rollback()
            diag = error.diag
            where = f" in {diag.table_name}" if diag.table_name else ""
            what = diag.constraint_name or (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise SeedRefused(
                f"seeding failed{where}: {what}; nothing was changed",
                hint="a CHECK constraint or a type the seeder does not know may need a default or a "
                "relaxed constraint in development schemas",
            ) from None
    return {"tables": counts, "rows": sum(counts.values())}
