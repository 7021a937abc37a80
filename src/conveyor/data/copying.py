"""Streams one table's rows from the source to the clone through COPY, masking the ruled columns.

`copy_table` is called by the clone pipeline (`data/clone.py`) once per table. A table without a
masking rule streams as binary COPY, bytes in, bytes out, never parsed. A table with rules streams
as text COPY: each line is split on tabs, only the ruled fields are unescaped, masked and escaped
again, and the other fields pass through as the bytes PostgreSQL sent. Outputs are memoised per
column, so a value repeated across rows (a customer's e-mail on each order) is masked once.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

from conveyor.data.catalog import CatalogTable, quote_ident
from conveyor.data.fastmask import fast_masker
from conveyor.data.masking import Masker, Transform

BATCH_BYTES = 256 * 1024
"""Bytes of COPY data gathered before they are masked and written as one block."""
PARALLEL_MIN_VALUES = 20_000
"""A table whose ruled values (estimated rows × ruled columns) reach this is masked by worker processes."""
MEMO_LIMIT = 200_000
"""Masked outputs remembered per column; the memo is emptied when it grows past this."""

_UNESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|(.))", re.DOTALL)
_SIMPLE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPE = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _unescape_one(match: re.Match[str]) -> str:
    octal, hexa, char = match.groups()
    if octal is not None:
        return chr(int(octal, 8))
    if hexa is not None:
        return chr(int(hexa, 16))
    return _SIMPLE.get(char, char)


def unescape(field: str) -> str | None:
    """A COPY text field as its value (`\\N` is NULL)."""
    if field == "\\N":
        return None
    return _UNESCAPE.sub(_unescape_one, field) if "\\" in field else field


def escape(value: Any) -> str:
    """A value as a COPY text field."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value).translate(_ESCAPE)


@dataclass(frozen=True)
class ColumnMask:
    """One ruled column of a table: its position among the copied columns and its transform."""

    position: int
    name: str
    transform: Transform


class LineMasker:
    """Masks the ruled fields of COPY text lines of one table."""

    def __init__(self, masker: Masker, columns: tuple[str, ...], masks: tuple[ColumnMask, ...]) -> None:
        self._columns = columns
        self._masks = masks
        self._mask = masker.mask
        # the unrolled form of a text transform where there is one (same outputs, data/fastmask.py)
        self._fast = [fast_masker(masker, m.transform) for m in masks]
        self._memo: list[dict[str, str]] = [{} for _ in masks]
        # date_shift by another column reads the whole source row; other transforms read one value
        self._needs_row = any(m.transform.option("by") for m in masks if m.transform.name == "date_shift")
        # split a line only up to its last ruled field; the rest is joined back untouched
        self._split = -1 if self._needs_row else max(m.position for m in masks) + 1

    def line(self, line: str) -> str:
        """One masked line."""
        fields = line.split("\t", self._split)
        row: Mapping[str, Any] | None = None
        if self._needs_row:
            row = {name: unescape(text) for name, text in zip(self._columns, fields, strict=True)}
        for index, mask in enumerate(self._masks):
            raw = fields[mask.position]
            if raw == "\\N":
                continue
            memo = self._memo[index]
            if row is None:
                out = memo.get(raw)
                if out is None:
                    value = unescape(raw)
                    fast = self._fast[index]
                    masked = (
                        fast(value)
                        if fast is not None and value is not None
                        else self._mask(mask.transform, value)
                    )
                    out = escape(masked)
                    if len(memo) >= MEMO_LIMIT:
                        memo.clear()
                    memo[raw] = out
            else:
                out = escape(self._mask(mask.transform, unescape(raw), row))
            fields[mask.position] = out
        return "\t".join(fields)

    def chunk(self, text: str) -> str:
        """Whole lines (each ending in a newline) masked."""
        lines = text.split("\n")
        line = self.line
        return "\n".join([line(x) for x in lines[:-1]]) + "\n"


@dataclass(frozen=True)
class Copied:
    """What copying one table did."""

    table: str
    rows: int
    bytes: int
    masked_columns: tuple[str, ...]


def copy_table(
    source: Any,
    target: Any,
    table: CatalogTable,
    select_from: str,
    masks: tuple[ColumnMask, ...],
    masker: Masker,
    progress: Callable[[int], None] | None = None,
    pool: MaskingPool | None = None,
) -> Copied:
    """Stream the rows of `select_from` into `table` of the target connection; returns the counts."""
    columns = tuple(c.name for c in table.writable)
    names = ", ".join(quote_ident(c) for c in columns)
    fmt = "(FORMAT binary)" if not masks else "(FORMAT text)"
    out_sql = f"COPY (SELECT {names} FROM {select_from}) TO STDOUT {fmt}"
    in_sql = f"COPY {table.sql} ({names}) FROM STDIN {fmt}"
    total = 0
    with source.cursor() as src, target.cursor() as dst:
        with src.copy(out_sql) as out, dst.copy(in_sql) as into:
            masking = LineMasker(masker, columns, masks) if masks else None
            parallel = pool is not None and masks and table.estimated_rows * len(masks) >= PARALLEL_MIN_VALUES
            pending: deque[Future[bytes]] = deque()
            batch: list[bytes] = []
            size = 0

            def flush() -> None:
                if parallel and pool is not None:
                    pending.append(pool.executor().submit(_mask_in_worker, columns, masks, b"".join(batch)))
                    while len(pending) > 2 * pool.workers or (pending and pending[0].done()):
                        into.write(pending.popleft().result())
                else:
                    into.write(_batch(batch, masking))

            # libpq hands out one row per read: rows are gathered into batches, so each write, decode
            # and split runs once per BATCH_BYTES instead of once per row
            for block in out:
                batch.append(bytes(block))
                size += len(block)
                if size >= BATCH_BYTES:
                    total += size
                    flush()
                    batch, size = [], 0
            if batch:
                total += size
                flush()
            while pending:
                into.write(pending.popleft().result())
        rows = dst.rowcount if dst.rowcount >= 0 else src.rowcount
    if progress is not None:
        progress(rows)
    return Copied(table.ref, rows, total, tuple(m.name for m in masks))


def _batch(blocks: list[bytes], masking: LineMasker | None) -> bytes:
    data = b"".join(blocks)
    if masking is None:
        return data
    # text COPY rows end in a newline, and a newline inside a value arrives escaped
    return masking.chunk(data.decode("utf-8")).encode("utf-8")


_worker_masker: Masker | None = None
_worker_maskers: dict[tuple[tuple[str, ...], tuple[ColumnMask, ...]], LineMasker] = {}


def _init_worker(masker: Masker) -> None:
    global _worker_masker
    _worker_masker = masker


def _mask_in_worker(columns: tuple[str, ...], masks: tuple[ColumnMask, ...], data: bytes) -> bytes:
    assert _worker_masker is not None, "the pool initialiser sets the masker"
    line_masker = _worker_maskers.get((columns, masks))
    if line_masker is None:
        line_masker = _worker_maskers[(columns, masks)] = LineMasker(_worker_masker, columns, masks)
    return line_masker.chunk(data.decode("utf-8")).encode("utf-8")


class MaskingPool:
    """Worker processes that mask COPY batches while the caller keeps reading and writing rows.

    Workers are spawned (never forked from a threaded server) on first use and get the masker once;
    the key never travels with a batch. Outputs are the same as in-process masking, byte for byte.
    """

    def __init__(self, masker: Masker, workers: int | None = None) -> None:
        self._masker = masker
        self.workers = workers if workers is not None else max(1, min(4, (os.cpu_count() or 1)))
        self._executor: ProcessPoolExecutor | None = None

    def executor(self) -> ProcessPoolExecutor:
        """The pool, started on first use."""
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.workers,
                mp_context=get_context("spawn"),
                initializer=_init_worker,
                initargs=(self._masker,),
            )
        return self._executor

    def warm_up(self) -> None:
        """Start the workers now, so their start-up overlaps the schema copy instead of the rows."""
        executor = self.executor()
        for _ in range(self.workers):
            executor.submit(int)

    def close(self) -> None:
        """Stop the workers."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
