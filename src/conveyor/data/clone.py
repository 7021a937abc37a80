"""The masked-clone pipeline against PostgreSQL: build the clone aside, then swap it in (ADR 0015).

`data/service.py` calls `inspect` (the source's catalog, for the pre-flight) and then `build`:

1. one REPEATABLE READ transaction on the source exports its snapshot; the schema (`pg_dump
   --schema-only --snapshot`) and every row are read in that one snapshot;
2. a new database `<target>_clone_<hex>` is created, owned by the target's owner role; the schema's
   pre-data section (types, tables, sequences, functions) is restored into it as that role;
3. subset rules run as temporary tables in the source transaction (`data/subset.py`);
4. each table streams through COPY (`data/copying.py`), masked where a rule says so;
5. sequences are set where the source's stood; the post-data section (primary keys, unique
   indexes, foreign keys, triggers) is restored last, so PostgreSQL itself checks that every key
   of the clone holds, and builds each index once over the loaded rows;
6. only then `swap` renames the target away, the clone into its place, and drops the old one.

Anything failing before the swap drops the half-built clone: the target stays as it was. The
source transaction is always rolled back, which also removes the subset's temporary tables.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.backups import pgtools
from conveyor.data.catalog import Catalog, CatalogTable, quote_ident, read_catalog, table_order
from conveyor.data.copying import PARALLEL_MIN_VALUES, ColumnMask, Copied, MaskingPool, copy_table
from conveyor.data.masking import Masker
from conveyor.data.rules import ColumnRef, RuleSet
from conveyor.data.subset import SubsetPlan
from conveyor.errors import Conflict, ConveyorError, first_line
from conveyor.resources.postgres import Names, connect, with_database

PG_TOOLS_HINT = "install the PostgreSQL client tools (pg_dump, pg_restore) of the server's major version"


class CloneFailed(Conflict):
    """The clone could not be built; the target database was left as it was."""

    title = "Clone failed"
    slug = "clone-failed"


@dataclass(frozen=True)
class Target:
    """Where the clone goes: the server (admin URL) and the target environment's names."""

    server: str
    names: Names


@dataclass
class Built:
    """What `build` copied: rows per table, masked rows per column, timings."""

    tables: list[Copied] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    subset_rows: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Rows copied, all tables."""
        return sum(t.rows for t in self.tables)

    def column_counts(self) -> dict[str, int]:
        """Rows written per ruled column (`table.column`), for the masking report."""
        return {f"{t.table}.{c}": t.rows for t in self.tables for c in t.masked_columns}


@contextmanager
def _connection(url: str) -> Iterator[Any]:
    with connect(url) as conn:
        conn.execute("SET client_encoding = 'UTF8'")
        conn.execute("SET DateStyle = 'ISO, YMD'")  # dates as date_shift reads them
        yield conn


def inspect(source_url: str) -> Catalog:
    """The source database's catalog (tables, columns, keys, sequences)."""
    with _connection(source_url) as conn:
        return read_catalog(conn)


def _tool(name: str) -> str:
    try:
        return pgtools.tool(name)
    except Conflict as exc:
        raise CloneFailed(exc.detail, hint=PG_TOOLS_HINT) from None


def _run(args: list[str], url: str, what: str) -> None:
    """Run tool `args[0]` against `url`: `-d` names it without its password, which goes in the environment."""
    target, env = pgtools.tool_target(url)
    proc = subprocess.run(
        [args[0], "-d", target, *args[1:]],
        capture_output=True,
        text=True,
        env={**env, "PGCONNECT_TIMEOUT": "10"},
    )
    if proc.returncode != 0:
        raise CloneFailed(
            f"{what} failed (exit {proc.returncode}): {pgtools.tool_error(proc.stderr)}",
            hint="the target database was left as it was; fix the cause and clone again",
        )


def clone_name(target: str) -> str:
    """A fresh name for the database a clone is built in (≤ 63 bytes)."""
    return f"{target[:44]}_clone_{secrets.token_hex(4)}"


def build(
    source_url: str,
    target: Target,
    rules: RuleSet,
    masker: Masker,
    subset: Callable[[Catalog], SubsetPlan],
    progress: Callable[[str, int], None] | None = None,
    subset_role: str | None = None,
) -> tuple[str, Built, Catalog]:
    """Build the masked clone in a new database; returns its name, what was copied and the catalog.

    `subset_role` (the source environment's owner role) runs the subset rules' SQL, so a condition
    written in conveyor.yaml never runs with the admin connection's rights.

    CloneFailed (with the new database dropped) when any step fails.
    """
    built = Built()
    name = clone_name(target.names.database)
    clone_url = with_database(target.server, name)
    workdir = Path(tempfile.mkdtemp(prefix="conveyor-clone-"))
    created = False
    pool = MaskingPool(masker)
    streams: list[_Streaming] = []
    try:
        with _connection(source_url) as source:
            source.autocommit = False
            source.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            snapshot = source.execute("SELECT pg_export_snapshot()").fetchone()[0]
            catalog = read_catalog(source)
            plan = subset(catalog)
            if any(t.estimated_rows * len(_masks(t, rules)) >= PARALLEL_MIN_VALUES for t in catalog.tables):
                pool.warm_up()
            started = time.perf_counter()
            dump = workdir / "schema.dump"
            _run(
                [_tool("pg_dump"), "--schema-only", "-Fc", f"--snapshot={snapshot}", "-f", str(dump)],
                source_url,
                "reading the source schema (pg_dump)",
            )
            with connect(target.server) as admin:
                from psycopg import sql

                admin.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
                        sql.Identifier(name), sql.Identifier(target.names.owner)
                    )
                )
                created = True
            _restore(dump, clone_url, target.names.owner, "pre-data")
            built.seconds["schema"] = time.perf_counter() - started
            started = time.perf_counter()
            if plan.seed and subset_role is not None:
                source.execute(f"SET LOCAL ROLE {quote_ident(subset_role)}")
            for statement in plan.seed:
                source.execute(statement)
            while any(source.execute(statement).rowcount > 0 for statement in plan.close):
                pass
            if plan.seed and subset_role is not None:
                source.execute("RESET ROLE")
            for ref, temp in plan.sources.items():
                built.subset_rows[ref] = source.execute(
                    f"SELECT count(*) FROM {quote_ident(temp)}"
                ).fetchone()[0]
            built.seconds["subset"] = time.perf_counter() - started
            started = time.perf_counter()
            # tables copied unchanged and whole stream through pg_dump | pg_restore, in C, while the
            # masked and subsetted ones stream through Python here
            bulk = [t for t in catalog.tables if not _masks(t, rules) and t.ref not in plan.sources]
            streaming = _bulk_copy(source_url, snapshot, clone_url, target.names.owner, bulk)
            streams.append(streaming)
            with _connection(clone_url) as clone:
                clone.execute(f"SET ROLE {quote_ident(target.names.owner)}")
                clone.autocommit = False
                for table in table_order(catalog):
                    if table in bulk:
                        continue
                    masks = _masks(table, rules)
                    copied = copy_table(source, clone, table, plan.source_of(table), masks, masker, pool=pool)
                    built.tables.append(copied)
                    if progress is not None:
                        progress(table.ref, copied.rows)
                built.seconds["masked_tables"] = time.perf_counter() - started
                _finish_bulk(streaming)
                built.seconds["bulk_tables"] = time.perf_counter() - started
                for table in bulk:
                    rows = clone.execute(f"SELECT count(*) FROM ONLY {table.sql}").fetchone()[0]
                    built.tables.append(Copied(table.ref, int(rows), 0, ()))
                    if progress is not None:
                        progress(table.ref, int(rows))
                for sequence in catalog.sequences:
                    if sequence.last_value is not None:
                        clone.execute(
                            "SELECT setval(%s::regclass, %s, %s)",
                            (sequence.sql, sequence.last_value, sequence.is_called),
                        )
                clone.commit()
            built.seconds["rows"] = time.perf_counter() - started
            source.rollback()
        started = time.perf_counter()
        _restore(dump, clone_url, target.names.owner, "post-data", jobs=min(4, os.cpu_count() or 1))
        with connect(target.server) as admin:
            database, owner = quote_ident(name), quote_ident(target.names.owner)
            admin.execute(f"REVOKE ALL ON DATABASE {database} FROM PUBLIC")
            admin.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {owner}")
        built.seconds["constraints"] = time.perf_counter() - started
        return name, built, catalog
    except BaseException as error:
        _stop(streams)  # the bulk copy's pg_dump holds a COPY open on the source: end it before the drop
        if created:
            drop_database(target.server, name)
        if isinstance(error, CloneFailed | KeyboardInterrupt):
            raise
        import psycopg

        if isinstance(error, psycopg.Error):
            first = first_line(error)
            raise CloneFailed(
                f"the clone failed while copying: {first}",
                hint="the target database was left as it was; fix the cause and clone again",
            ) from None
        raise
    finally:
        _stop(streams)
        pool.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _masks(table: CatalogTable, rules: RuleSet) -> tuple[ColumnMask, ...]:
    """The table's columns that a rule masks (a `keep` rule copies the value as it is)."""
    return tuple(
        ColumnMask(i, column.name, transform)
        for i, column in enumerate(table.writable)
        if (transform := rules.get(ColumnRef(table.ref, column.name))) is not None and transform.kind.masks
    )


def _restore(dump: Path, url: str, role: str, section: str, jobs: int = 1) -> None:
    # one transaction, or parallel jobs (indexes built side by side): a failure drops the clone anyway
    how = ["--single-transaction"] if jobs == 1 else [f"--jobs={jobs}"]
    _run(
        [_tool("pg_restore"), f"--section={section}", "--no-owner", "--no-privileges", f"--role={role}",
         "--exit-on-error", *how, str(dump)],
        url,
        f"restoring the schema's {section} section into the clone (pg_restore)",
    )  # fmt: skip


@dataclass
class _Streaming:
    dump: subprocess.Popen[bytes] | None = None
    restore: subprocess.Popen[bytes] | None = None
    errors: dict[str, Any] = field(default_factory=dict)
    """Each tool's stderr, in a temporary file: a pipe nobody reads until the end could fill and stall it."""


def _stop(streams: list[_Streaming]) -> None:
    """Kill and reap what is left of the bulk copies (idempotent)."""
    for streaming in streams:
        for proc in (streaming.dump, streaming.restore):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        for handle in streaming.errors.values():
            handle.close()
        streaming.errors.clear()


def _bulk_copy(
    source_url: str, snapshot: str, clone_url: str, role: str, tables: list[CatalogTable]
) -> _Streaming:
    """Start `pg_dump --data-only | pg_restore` of `tables` in the source's snapshot; returns at once."""
    if not tables:
        return _Streaming()
    names = [f"--table={quote_ident(t.schema)}.{quote_ident(t.name)}" for t in tables]
    # closed by _stop when the copy ends or fails
    dump_errors, restore_errors = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115
    source, source_env = pgtools.tool_target(source_url)
    clone, clone_env = pgtools.tool_target(clone_url)
    dump = subprocess.Popen(
        [
            _tool("pg_dump"),
            "--data-only",
            "-Fc",
            "--compress=0",
            f"--snapshot={snapshot}",
            *names,
            "-d",
            source,
        ],
        stdout=subprocess.PIPE,
        stderr=dump_errors,
        env=source_env,
    )
    restore = subprocess.Popen(
        [_tool("pg_restore"), "--data-only", f"--role={role}", "--exit-on-error", "-d", clone],
        stdin=dump.stdout,
        stderr=restore_errors,
        env=clone_env,
    )
    assert dump.stdout is not None
    dump.stdout.close()  # pg_restore holds the read end; pg_dump sees a broken pipe if it stops
    return _Streaming(dump, restore, {"pg_dump": dump_errors, "pg_restore": restore_errors})


def _finish_bulk(streaming: _Streaming) -> None:
    """Wait for the bulk copy; CloneFailed with the tool's last words when it failed."""
    for what, proc in (("pg_restore", streaming.restore), ("pg_dump", streaming.dump)):
        if proc is None:
            continue
        proc.wait()
        if proc.returncode != 0:
            errors = streaming.errors.get(what)
            said = ""
            if errors is not None:
                errors.seek(0)
                said = errors.read().decode(errors="replace")
            raise CloneFailed(
                f"copying the unmasked tables ({what}) failed (exit {proc.returncode}): "
                f"{pgtools.tool_error(said)}",
                hint="the target database was left as it was; fix the cause and clone again",
            )


def drop_database(server: str, name: str) -> None:
    """Drop a database, ending its sessions (a failed clone's half-built copy)."""
    with connect(server) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


def swap(server: str, target: str, clone: str, owner: str) -> int:
    """Put the clone in the target's place and drop the old target; returns the app sessions ended.

    `pgtools.swap_in` refuses new connections, waits until the target's sessions are gone and
    renames both databases in one transaction (connections are allowed again if that fails). A
    clone that cannot take the target's place is dropped, and the target stays as it was.
    """
    retired = f"{target[:44]}_old_{secrets.token_hex(4)}"
    try:
        ended = pgtools.swap_in(server, target, clone, retired, owner)
    except Exception as exc:
        drop_database(server, clone)
        why = exc.detail if isinstance(exc, ConveyorError) else pgtools.tool_error(str(exc))
        raise CloneFailed(
            f"the clone could not take {target}'s place: {why}",
            hint="the target database was left as it was; retry when its sessions can be ended",
        ) from None
    drop_database(server, retired)
    return ended


def checksums(url: str) -> Mapping[str, tuple[int, str]]:
    """Rows and an order-independent md5 of every table's rows, by table (for tests and evidence)."""
    result: dict[str, tuple[int, str]] = {}
    with _connection(url) as conn:
        for table in read_catalog(conn).tables:
            count, digest = conn.execute(
                f"SELECT count(*), coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), '') "
                f"FROM ONLY {table.sql} AS t"
            ).fetchone()
            result[table.ref] = (int(count), str(digest))
    return result
