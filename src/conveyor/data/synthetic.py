"""Pure: synthetic rows for every table of a catalog, the same for the same seed (`conveyor data seed`).

`generate` walks the tables parents first and yields each table's rows as Python values. A column
gets a value from its name when the name says what it holds (`email`, `first_name`, `phone`,
`city`, `created_at`, `price`, …) and from its type otherwise, always within the type's length,
precision and range. Sequence-numbered keys count 1…N, so children can reference them; a foreign
key takes one of the parent's generated keys (composite keys together, self references an earlier
row); NOT NULL is always honoured and unique constraints are kept by drawing again, then by
suffixing. Randomness comes only from the seed and the table's name (a `random.Random` and a
Faker instance per table), never from the clock: dates count from a fixed day.

Addresses are safe like the masking core's: e-mails on RFC 2606 domains, phone numbers in NANP's
fictional 555-01XX range.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from conveyor.data.catalog import Catalog, CatalogColumn, CatalogTable, table_order
from conveyor.errors import InvalidRequest

ANCHOR = datetime(2025, 1, 1, tzinfo=UTC)
"""Generated dates count back from this fixed moment, so the same seed gives the same dates on any day."""
SPAN_DAYS = 3 * 365
DRAWS = 25
"""Attempts at a fresh value for a unique constraint before a suffix makes it unique."""
NULL_SHARE = 0.1
"""Share of NULLs in a nullable column that is not a key."""

Value = Any
Gen = Callable[["Context", int], Value]


@dataclass
class Context:
    """The randomness of one table: a `random.Random` and a Faker instance, both seeded."""

    rng: random.Random
    fake: Any


def _seed_of(seed: int, table: str, salt: str = "") -> int:
    digest = hashlib.sha256(f"{seed}\x00{table}\x00{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _context(seed: int, table: str) -> Context:
    from faker import Faker

    fake = Faker("en_US")
    fake.seed_instance(_seed_of(seed, table, "faker"))
    return Context(random.Random(_seed_of(seed, table)), fake)


def _moment(ctx: Context) -> datetime:
    return ANCHOR - timedelta(seconds=ctx.rng.randrange(SPAN_DAYS * 86400))


def _birth(ctx: Context) -> date:
    return (ANCHOR - timedelta(days=ctx.rng.randrange(18 * 365, 90 * 365))).date()


def _email(ctx: Context, row: int) -> str:
    first, last = ctx.fake.first_name().lower(), ctx.fake.last_name().lower()
    domain = ("example.com", "example.net", "example.org")[ctx.rng.randrange(3)]
    return f"{first}.{last}{ctx.rng.randrange(1, 10000)}@{domain}"


def _phone(ctx: Context, row: int) -> str:
    area = f"{ctx.rng.randrange(2, 10)}{ctx.rng.randrange(0, 9)}{ctx.rng.randrange(10)}"
    if area[1:] == "11":
        area = area[0] + "12"
    return f"+1{area}55501{ctx.rng.randrange(100):02d}"


# (pattern over the column's name, generator): the first match wins; text columns only
_TEXT_BY_NAME: tuple[tuple[str, Gen], ...] = (
    (r"e_?mail", _email),
    (r"phone|mobile|fax|tel", _phone),
    (r"first_?name|given_?name|forename", lambda c, r: c.fake.first_name()),
    (r"last_?name|family_?name|surname", lambda c, r: c.fake.last_name()),
    (r"user_?name|login|handle", lambda c, r: c.fake.user_name()),
    (r"company|organi[sz]ation|employer|vendor|supplier", lambda c, r: c.fake.company()),
    (r"(^|_)name$|full_?name|display_?name|customer|contact", lambda c, r: c.fake.name()),
    (r"street|address|addr", lambda c, r: c.fake.street_address()),
    (r"city|town", lambda c, r: c.fake.city()),
    (r"state|province|region", lambda c, r: c.fake.state_abbr()),
    (r"country", lambda c, r: c.fake.country_code()),
    (r"zip|postal|postcode", lambda c, r: c.fake.postcode()),
    (r"currency", lambda c, r: c.fake.currency_code()),
    (r"url|website|homepage|link", lambda c, r: f"https://{c.fake.domain_word()}.example.com/"),
    (r"domain|host", lambda c, r: f"{c.fake.domain_word()}.example.com"),
    (r"ip(_?addr)?$", lambda c, r: c.fake.ipv4_private()),
    (r"iban", lambda c, r: c.fake.iban()),
    (r"card", lambda c, r: c.fake.credit_card_number()),
    (r"colou?r", lambda c, r: c.fake.color_name()),
    (r"sku|code|ref(erence)?$|number$", lambda c, r: c.fake.bothify("??-#####").upper()),
    (r"status|state$", lambda c, r: ("active", "pending", "inactive", "archived")[c.rng.randrange(4)]),
    (r"title|subject|headline", lambda c, r: c.fake.sentence(nb_words=4).rstrip(".")),
    (r"desc|note|comment|body|text|message|bio|summary|content", lambda c, r: c.fake.paragraph(2)),
    (r"password|hash|token|secret|digest", lambda c, r: c.fake.sha256()),
    (r"uuid|guid", lambda c, r: str(uuid.UUID(int=c.rng.getrandbits(128), version=4))),
    (r"word|tag|label|category|kind|type|slug", lambda c, r: c.fake.word()),
)

_INT_LIMITS = {"int2": 32767, "int4": 2147483647, "int8": 9223372036854775807}


def _int(column: CatalogColumn) -> Gen:
    name, limit = column.name.lower(), _INT_LIMITS.get(column.base, 2147483647)
    for pattern, low, high in (
        (r"age$", 18, 90),
        (r"qty|quantity|count|units|items", 1, 20),
        (r"year", 1950, 2025),
        (r"price|amount|total|cost|cents|balance|fee", 100, 100_000),
        (r"rating|stars|score", 1, 5),
        (r"percent|pct", 0, 100),
    ):
        if re.search(pattern, name):
            return _between(low, min(high, limit))
    return _between(1, min(1_000_000, limit))


def _between(low: int, high: int) -> Gen:
    return lambda c, r: c.rng.randint(low, high)


def _decimal(column: CatalogColumn) -> Gen:
    scale = column.scale if column.scale is not None else 2
    digits = (column.precision or 12) - scale
    top = min(10**digits - 1, 10_000)
    name = column.name.lower()
    if re.search(r"lat(itude)?$", name) and digits >= 2:
        return lambda c, r: round(Decimal(c.rng.uniform(-90, 90)), scale)
    if re.search(r"lng|lon(gitude)?$", name) and digits >= 3:
        return lambda c, r: round(Decimal(c.rng.uniform(-180, 180)), scale)
    quantum = Decimal(1).scaleb(-scale)
    return lambda c, r: (Decimal(c.rng.randrange(0, top * 10**scale + 1)) * quantum).quantize(quantum)


def _float(column: CatalogColumn) -> Gen:
    return lambda c, r: round(c.rng.uniform(0, 1000), 4)


def _text(column: CatalogColumn) -> Gen:
    name = column.name.lower()
    found = next((gen for pattern, gen in _TEXT_BY_NAME if re.search(pattern, name)), None)
    if found is None:
        found = _words
    limit = column.max_length
    if limit is None:
        return found
    return lambda c, r: str(found(c, r))[:limit]


def _words(ctx: Context, row: int) -> str:
    return " ".join(ctx.fake.words(ctx.rng.randint(1, 3)))


def _moment_column(column: CatalogColumn) -> Gen:
    name = column.name.lower()
    if column.base == "date":
        if re.search(r"birth|dob", name):
            return lambda c, r: _birth(c)
        return lambda c, r: _moment(c).date()
    if column.base == "timestamptz":
        return lambda c, r: _moment(c)
    return lambda c, r: _moment(c).replace(tzinfo=None)


_BY_TYPE: dict[str, Callable[[CatalogColumn], Gen]] = {
    "bool": lambda col: lambda c, r: c.rng.random() < 0.5,
    "int2": _int,
    "int4": _int,
    "int8": _int,
    "numeric": _decimal,
    "float4": _float,
    "float8": _float,
    "money": lambda col: lambda c, r: Decimal(c.rng.randrange(100, 1_000_000)) / 100,
    "text": _text,
    "varchar": _text,
    "bpchar": _text,
    "citext": _text,
    "name": _text,
    "date": _moment_column,
    "timestamp": _moment_column,
    "timestamptz": _moment_column,
    "time": lambda col: lambda c, r: f"{c.rng.randrange(24):02d}:{c.rng.randrange(60):02d}:00",
    "timetz": lambda col: lambda c, r: f"{c.rng.randrange(24):02d}:{c.rng.randrange(60):02d}:00+00",
    "interval": lambda col: lambda c, r: f"{c.rng.randrange(1, 720)} hours",
    "uuid": lambda col: lambda c, r: uuid.UUID(int=c.rng.getrandbits(128), version=4),
    "json": lambda col: lambda c, r: json.dumps({"key": c.fake.word(), "n": c.rng.randrange(100)}),
    "jsonb": lambda col: lambda c, r: json.dumps({"key": c.fake.word(), "n": c.rng.randrange(100)}),
    "bytea": lambda col: lambda c, r: c.rng.randbytes(16),
    "inet": lambda col: lambda c, r: c.fake.ipv4_private(),
    "cidr": lambda col: lambda c, r: f"10.{c.rng.randrange(256)}.{c.rng.randrange(256)}.0/24",
}


def column_generator(column: CatalogColumn) -> Gen | None:
    """How values of a plain (non-key) column are made; None for a type the seeder cannot make."""
    if column.array:
        return lambda c, r: []
    if column.enum:
        return lambda c, r: column.enum[c.rng.randrange(len(column.enum))]
    make = _BY_TYPE.get(column.base)
    return make(column) if make else None


def _unique_variant(value: Value, row: int, column: CatalogColumn) -> Value:
    """A value made unique by the row number, kept within the column's length."""
    if isinstance(value, str):
        suffix = f"-{row}"
        if "@" in value and "email" in column.name.lower():
            local, _, domain = value.partition("@")
            text = f"{local}{suffix}@{domain}"
        else:
            text = f"{value}{suffix}"
        limit = column.max_length
        return text if limit is None or len(text) <= limit else text[-limit:]
    if isinstance(value, int) and not isinstance(value, bool):
        return 1_000_000 + row
    if isinstance(value, datetime | date):
        return value + timedelta(seconds=row) if isinstance(value, datetime) else value - timedelta(days=row)
    if isinstance(value, uuid.UUID):
        return uuid.UUID(int=(value.int + row) % (1 << 128))
    return value


@dataclass(frozen=True)
class Generated:
    """One table's rows, in its writable columns' order."""

    table: CatalogTable
    columns: tuple[str, ...]
    rows: list[tuple[Value, ...]]


class SeedRefused(InvalidRequest):
    """A schema the seeder cannot fill; says which table and column, and why."""

    title = "Seed refused"
    slug = "seed-refused"


def generate(catalog: Catalog, rows: int, seed: int) -> Iterator[Generated]:
    """Rows for every table, parents first; the same catalog, rows and seed give the same rows."""
    if rows < 1:
        raise InvalidRequest(f"--rows {rows}: give at least 1 row per table", hint="e.g. --rows 100")
    keys: dict[tuple[str, tuple[str, ...]], list[tuple[Value, ...]]] = {}
    referenced: dict[str, set[tuple[str, ...]]] = {}
    for table in catalog.tables:
        for fk in table.foreign_keys:
            referenced.setdefault(fk.ref_table, set()).add(fk.ref_columns)
    for table in table_order(catalog):
        generated = _table_rows(table, rows, seed, keys)
        for columns in referenced.get(table.ref, ()):
            index = [generated.columns.index(c) for c in columns]
            keys[(table.ref, columns)] = [tuple(row[i] for i in index) for row in generated.rows]
        yield generated


def _table_rows(
    table: CatalogTable,
    count: int,
    seed: int,
    keys: dict[tuple[str, tuple[str, ...]], list[tuple[Value, ...]]],
) -> Generated:
    ctx = _context(seed, table.ref)
    columns = table.writable
    names = tuple(c.name for c in columns)
    fk_of: dict[str, tuple[int, int]] = {}  # column → (fk index, position in the fk)
    for n, fk in enumerate(table.foreign_keys):
        for position, name in enumerate(fk.columns):
            fk_of.setdefault(name, (n, position))
    plain: dict[str, Gen] = {}
    for column in columns:
        if column.name in fk_of or column.serial:
            continue
        gen = column_generator(column)
        if gen is None:
            if column.nullable or column.default is not None:
                continue  # left NULL or to its default
            raise SeedRefused(
                f"{table.ref}.{column.name} is NOT NULL of type {column.type}, which the seeder cannot make",
                hint=f"give {table.ref}.{column.name} a default, "
                "or make it nullable in the environment's schema",
            )
        plain[column.name] = gen
    uniques = [u for u in table.unique if all(c in names for c in u.columns)]
    nullable = {c.name: c.nullable for c in columns}
    seen: list[set[tuple[Value, ...]]] = [set() for _ in uniques]
    out: list[tuple[Value, ...]] = []
    for row in range(count):
        values: dict[str, Value] = {}
        for column in columns:
            if column.serial and column.name not in fk_of:
                values[column.name] = row + 1
        picks = _pick_references(table, ctx, row, out, names, keys)
        values.update(picks)
        for name, gen in plain.items():
            nullable_plain = nullable[name] and not any(name in u.columns for u in uniques)
            values[name] = None if nullable_plain and ctx.rng.random() < NULL_SHARE else gen(ctx, row)
        if not _make_unique(table, uniques, seen, values, plain, ctx, row, out, names, keys):
            continue  # every combination of this row's references is taken (a full join table)
        out.append(tuple(values.get(n) for n in names))
    return Generated(table, names, out)


def _pick_references(
    table: CatalogTable,
    ctx: Context,
    row: int,
    done: list[tuple[Value, ...]],
    names: tuple[str, ...],
    keys: dict[tuple[str, tuple[str, ...]], list[tuple[Value, ...]]],
) -> dict[str, Value]:
    picks: dict[str, Value] = {}
    for fk in table.foreign_keys:
        if any(c in picks for c in fk.columns):
            continue  # a column in two foreign keys follows the first
        nullable = all((col := table.column(c)) is not None and col.nullable for c in fk.columns)
        if fk.ref_table == table.ref:
            index = [names.index(c) for c in fk.ref_columns]
            if done and (not nullable or ctx.rng.random() < 0.7):
                parent = done[ctx.rng.randrange(len(done))]
                picks.update(zip(fk.columns, (parent[i] for i in index), strict=True))
            elif nullable:
                picks.update(dict.fromkeys(fk.columns))
            else:
                raise SeedRefused(
                    f"{table.ref} references itself through {', '.join(fk.columns)}, NOT NULL: "
                    "its first row has nothing to point at",
                    hint="make the column nullable (a root row has no parent)",
                )
            continue
        parents = keys.get((fk.ref_table, fk.ref_columns))
        if parents:
            if nullable and ctx.rng.random() < NULL_SHARE / 2:
                picks.update(dict.fromkeys(fk.columns))
            else:
                picks.update(zip(fk.columns, parents[ctx.rng.randrange(len(parents))], strict=True))
        elif nullable:
            picks.update(dict.fromkeys(fk.columns))
        else:
            raise SeedRefused(
                f"{table.ref}.{', '.join(fk.columns)} must reference {fk.ref_table}, which has no rows yet "
                "(the two tables reference each other with NOT NULL keys)",
                hint="make one side of the cycle nullable or DEFERRABLE",
            )
    return picks


def _make_unique(
    table: CatalogTable,
    uniques: list[Any],
    seen: list[set[tuple[Value, ...]]],
    values: dict[str, Value],
    plain: dict[str, Gen],
    ctx: Context,
    row: int,
    done: list[tuple[Value, ...]],
    names: tuple[str, ...],
    keys: dict[tuple[str, tuple[str, ...]], list[tuple[Value, ...]]],
) -> bool:
    for index, unique in enumerate(uniques):

        def key(columns: tuple[str, ...] = unique.columns) -> tuple[Value, ...]:
            return tuple(values.get(c) for c in columns)

        attempt = 0
        while _taken(key(), seen[index], unique.nulls_distinct):
            attempt += 1
            redraw = [c for c in unique.columns if c in plain]
            if attempt <= DRAWS:
                for name in redraw:
                    values[name] = plain[name](ctx, row)
                if not redraw:
                    values.update(_pick_references(table, ctx, row, done, names, keys))
            elif redraw:
                name = redraw[-1]
                column = table.column(name)
                assert column is not None
                values[name] = _unique_variant(values[name], row + attempt * 1_000_003, column)
            else:
                return False
            if attempt > DRAWS + 10:
                return False
    for index, unique in enumerate(uniques):
        seen[index].add(tuple(values.get(c) for c in unique.columns))
    return True


def _taken(key: tuple[Value, ...], seen: set[tuple[Value, ...]], nulls_distinct: bool) -> bool:
    if nulls_distinct and any(v is None for v in key):
        return False
    return key in seen
