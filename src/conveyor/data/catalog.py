"""The shape of an environment's PostgreSQL database, read from its catalogs: tables, columns, keys.

The seeder and the masked clone call `read_catalog` on an open psycopg connection; everything else
here is plain frozen values (`Catalog`, `CatalogTable`, …) that the pure planners take, and
`Catalog.for_rules()` gives the masking pre-flight its `rules.Schema`. A table is named as the
masking rules name it: `users` in schema public, `billing.invoices` elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from conveyor.data.rules import Column, ColumnRef, ForeignKey, Schema, Table, Unique

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


def quote_ident(name: str) -> str:
    """A PostgreSQL identifier, always quoted (so case and reserved words survive)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class CatalogColumn:
    """A column as the seeder and the clone need it."""

    name: str
    type: str
    """As PostgreSQL prints it: `character varying(120)`, `numeric(10,2)`, `integer[]`."""
    base: str
    """The element type's name (`varchar`, `int4`, `timestamptz`, an enum's name)."""
    nullable: bool = True
    default: str | None = None
    identity: bool = False
    generated: bool = False
    """A stored generated column: PostgreSQL computes it; it is never copied or written."""
    max_length: int | None = None
    precision: int | None = None
    scale: int | None = None
    array: bool = False
    enum: tuple[str, ...] = ()
    """The labels, when the type is an enum."""

    @property
    def writable(self) -> bool:
        """Whether COPY may write it (generated columns are computed by the server)."""
        return not self.generated

    @property
    def serial(self) -> bool:
        """Whether a sequence numbers it (identity or a nextval default)."""
        return self.identity or (self.default or "").startswith("nextval(")


@dataclass(frozen=True)
class CatalogForeignKey:
    """A foreign key, composite or not: `columns` of this table reference `ref_columns` of `ref_table`."""

    name: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class CatalogUnique:
    """A primary key, unique constraint or unique index over plain columns."""

    name: str
    columns: tuple[str, ...]
    primary: bool = False
    nulls_distinct: bool = True


@dataclass(frozen=True)
class CatalogTable:
    """A table that holds rows (a plain table or a partition)."""

    schema: str
    name: str
    columns: tuple[CatalogColumn, ...]
    primary_key: tuple[str, ...] = ()
    unique: tuple[CatalogUnique, ...] = ()
    foreign_keys: tuple[CatalogForeignKey, ...] = ()
    estimated_rows: int = 0

    @property
    def ref(self) -> str:
        """The name masking rules use: `users` in public, `billing.invoices` elsewhere."""
        return self.name if self.schema == "public" else f"{self.schema}.{self.name}"

    @property
    def sql(self) -> str:
        """The quoted, schema-qualified name."""
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"

    @property
    def writable(self) -> tuple[CatalogColumn, ...]:
        """The columns COPY writes, in table order."""
        return tuple(c for c in self.columns if c.writable)

    def column(self, name: str) -> CatalogColumn | None:
        """The column called `name`, if any."""
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class Sequence:
    """A sequence and where it stands, so a clone numbers new rows after the copied ones."""

    schema: str
    name: str
    last_value: int | None
    is_called: bool

    @property
    def sql(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"


@dataclass(frozen=True)
class Catalog:
    """Every table of a database outside the system schemas, with its keys, and its sequences."""

    tables: tuple[CatalogTable, ...]
    sequences: tuple[Sequence, ...] = field(default=())

    def table(self, ref: str) -> CatalogTable | None:
        """The table a rule names (`users` or `billing.invoices`)."""
        return next((t for t in self.tables if t.ref == ref), None)

    def __iter__(self) -> Iterator[CatalogTable]:
        return iter(self.tables)

    def for_rules(self) -> Schema:
        """The schema as the masking pre-flight reads it."""
        return Schema(
            tuple(
                Table(
                    name=t.ref,
                    columns=tuple(Column(c.name, c.type, c.nullable) for c in t.columns),
                    primary_key=t.primary_key,
                    unique=tuple(Unique(u.columns, u.nulls_distinct) for u in t.unique if not u.primary),
                    foreign_keys=tuple(
                        ForeignKey(col, ColumnRef(fk.ref_table, ref_col))
                        for fk in t.foreign_keys
                        for col, ref_col in zip(fk.columns, fk.ref_columns, strict=True)
                    ),
                )
                for t in self.tables
            )
        )


def _ref(schema: str, name: str) -> str:
    return name if schema == "public" else f"{schema}.{name}"


_TABLES = """
SELECT c.oid, n.nspname, c.relname,
       CASE WHEN c.reltuples < 0 THEN pg_relation_size(c.oid) / 100 ELSE c.reltuples END::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname <> ALL(%(system)s) AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
  AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname, c.relname
"""
_COLUMNS = """
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity <> '', a.attgenerated <> '',
       coalesce(et.typname, t.typname), t.typcategory = 'A',
       information_schema._pg_char_max_length(a.atttypid, a.atttypmod),
       information_schema._pg_numeric_precision(a.atttypid, a.atttypmod),
       information_schema._pg_numeric_scale(a.atttypid, a.atttypmod),
       (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e
         WHERE e.enumtypid = coalesce(et.oid, t.oid))
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = ANY(%(oids)s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""
_UNIQUE = """
SELECT i.indrelid, ic.relname, i.indisprimary, i.indnullsnotdistinct,
       array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(attnum, pos)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.pos)
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = ANY(%(oids)s) AND i.indisunique AND i.indpred IS NULL AND 0 <> ALL(i.indkey)
ORDER BY i.indrelid, NOT i.indisprimary, ic.relname
"""
_FOREIGN_KEYS = """
SELECT c.conrelid, c.conname, rn.nspname, r.relname,
       array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(attnum, pos)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.pos),
       array(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(attnum, pos)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.pos)
FROM pg_constraint c JOIN pg_class r ON r.oid = c.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE c.contype = 'f' AND c.conrelid = ANY(%(oids)s) AND c.conparentid = 0
ORDER BY c.conrelid, c.conname
"""
_SEQUENCES = """
SELECT schemaname, sequencename, last_value FROM pg_sequences
WHERE schemaname <> ALL(%(system)s) ORDER BY schemaname, sequencename
"""


def read_catalog(conn: Any) -> Catalog:
    """The database's tables, columns, keys and sequences (one query per catalog, any table count)."""
    params: dict[str, Any] = {"system": list(SYSTEM_SCHEMAS)}
    found = conn.execute(_TABLES, params).fetchall()
    params["oids"] = [row[0] for row in found]
    columns: dict[int, list[CatalogColumn]] = {}
    for (
        oid,
        name,
        type_,
        notnull,
        default,
        identity,
        generated,
        base,
        array,
        length,
        prec,
        scale,
        labels,
    ) in conn.execute(_COLUMNS, params).fetchall():
        columns.setdefault(oid, []).append(
            CatalogColumn(
                name=name,
                type=type_,
                base=base,
                nullable=not notnull,
                default=default,
                identity=identity,
                generated=generated,
                max_length=length,
                precision=prec,
                scale=scale,
                array=array,
                enum=tuple(labels or ()),
            )
        )
    unique: dict[int, list[CatalogUnique]] = {}
    for oid, name, primary, not_distinct, cols in conn.execute(_UNIQUE, params).fetchall():
        unique.setdefault(oid, []).append(CatalogUnique(name, tuple(cols), primary, not not_distinct))
    fks: dict[int, list[CatalogForeignKey]] = {}
    for oid, name, ref_schema, ref_name, cols, ref_cols in conn.execute(_FOREIGN_KEYS, params).fetchall():
        fks.setdefault(oid, []).append(
            CatalogForeignKey(name, tuple(cols), _ref(ref_schema, ref_name), tuple(ref_cols))
        )
    tables = []
    for oid, schema, name, estimate in found:
        keys = unique.get(oid, [])
        primary = next((u.columns for u in keys if u.primary), ())
        tables.append(
            CatalogTable(
                schema=schema,
                name=name,
                columns=tuple(columns.get(oid, ())),
                primary_key=primary,
                unique=tuple(keys),
                foreign_keys=tuple(fks.get(oid, ())),
                estimated_rows=int(estimate),
            )
        )
    sequences = tuple(
        Sequence(schema, name, last, last is not None)
        for schema, name, last in conn.execute(_SEQUENCES, {"system": list(SYSTEM_SCHEMAS)}).fetchall()
    )
    return Catalog(tuple(tables), sequences)


def table_order(catalog: Catalog) -> list[CatalogTable]:
    """Tables with every referenced table before its referrers; a cycle is broken at a stable place."""
    by_ref = {t.ref: t for t in catalog.tables}
    done: set[str] = set()
    visiting: set[str] = set()
    order: list[CatalogTable] = []

    def visit(table: CatalogTable) -> None:
        if table.ref in done or table.ref in visiting:
            return
        visiting.add(table.ref)
        for fk in table.foreign_keys:
            parent = by_ref.get(fk.ref_table)
            if parent is not None and parent.ref != table.ref:
                visit(parent)
        visiting.discard(table.ref)
        done.add(table.ref)
        order.append(table)

    for table in sorted(catalog.tables, key=lambda t: t.ref):
        visit(table)
    return order
