"""Per-instance log files: the supervisor writes them, `conveyor logs` tails and follows them.

Layout: `log_dir/<environment>/<service>-<version>-<index>.log`, rotated by size into `.log.1`
(newest) … `.log.<backups>`; rotated files older than the retention period are deleted.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

_ROTATED = re.compile(r"\.log\.\d+$")
_BLOCK = 64 * 1024


def instance_log_path(log_dir: Path, environment: str, service: str, version: str, index: int) -> Path:
    """Where the output of one instance goes."""
    return log_dir / environment / f"{service}-{version}-{index}.log"


def rotated_path(path: Path, generation: int) -> Path:
    """The `generation`-th rotated file of `path` (1 is the newest)."""
    return path.with_name(f"{path.name}.{generation}")


class InstanceLog:
    """An append-only log file that rotates by size; safe to write from several threads."""

    def __init__(self, path: Path, *, max_bytes: int = 10 * 1024 * 1024, backups: int = 5) -> None:
        if max_bytes < 1 or backups < 0:
            raise ValueError(f"max_bytes must be ≥ 1 and backups ≥ 0 (got {max_bytes}, {backups})")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._size = 0

    def write(self, data: bytes) -> None:
        """Append `data`, rotating first whenever the current file would grow past `max_bytes`."""
        with self._lock:
            while data:
                fh = self._open()
                room = self.max_bytes - self._size
                if len(data) <= room:
                    fh.write(data)
                    self._size += len(data)
                    break
                # cut at the last newline that fits, so a line stays whole in one file when it can
                cut = data.rfind(b"\n", 0, room) + 1 if room > 0 else 0
                if cut == 0 and self._size == 0:
                    cut = room  # a single line longer than max_bytes: split it
                if cut:
                    fh.write(data[:cut])
                    self._size += cut
                    data = data[cut:]
                self._rotate()
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        """Close the file; a later write opens it again."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _open(self) -> BinaryIO:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")  # noqa: SIM115 - kept open across writes
            self._size = self._file.tell()
        return self._file

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
            return
        rotated_path(self.path, self.backups).unlink(missing_ok=True)
        for generation in range(self.backups - 1, 0, -1):
            source = rotated_path(self.path, generation)
            if source.exists():
                source.rename(rotated_path(self.path, generation + 1))
        if self.path.exists():
            self.path.rename(rotated_path(self.path, 1))


def prune_rotated(log_dir: Path, *, retention_days: float, now: float) -> list[Path]:
    """Delete rotated log files last written more than `retention_days` before `now` (wall time)."""
    cutoff = now - retention_days * 86400
    removed: list[Path] = []
    if not log_dir.is_dir():
        return removed
    for path in sorted(log_dir.rglob("*.log.*")):
        if not _ROTATED.search(path.name):
            continue
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:
            continue  # removed by a concurrent rotation
    return removed


def tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a log, reading backwards from the end (into rotated files if needed)."""
    if lines <= 0:
        return []
    collected: deque[str] = deque()
    generation = 0
    while len(collected) < lines:
        source = path if generation == 0 else rotated_path(path, generation)
        try:
            chunk = _tail_file(source, lines - len(collected))
        except FileNotFoundError:
            if generation == 0:
                generation += 1
                continue
            break
        collected.extendleft(reversed(chunk))
        generation += 1
    return list(collected)


def _tail_file(path: Path, lines: int) -> list[str]:
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        return _last_lines(fh, end, lines)


def _last_lines(fh: BinaryIO, end: int, lines: int) -> list[str]:
    """The last `lines` lines of `fh` before offset `end`, reading whole blocks backwards."""
    buffer = b""
    position = end
    # one extra newline: the final line's terminator does not start a new line
    while position > 0 and buffer.count(b"\n") <= lines:
        step = min(_BLOCK, position)
        position -= step
        fh.seek(position)
        buffer = fh.read(step) + buffer
    text = buffer.decode("utf-8", errors="replace").removesuffix("\n")
    return text.split("\n")[-lines:] if buffer and lines else []


class _Follower:
    """Blocking reader behind `follow`: yields complete lines and reopens the file after a rotation."""

    def __init__(self, path: Path, backlog: int) -> None:
        self.path = path
        self.backlog = backlog
        self._file: BinaryIO | None = None
        self._partial = b""
        self._waited = False  # the file did not exist at first: read it from its start once it does

    def poll(self) -> list[str]:
        lines: list[str] = []
        if self._file is None:
            if not self._open(at_end=not self._waited):
                self._waited = True
                return lines
            lines.extend(self._take_backlog())
        assert self._file is not None
        lines.extend(self._drain())
        if self._replaced():
            lines.extend(self._drain())
            if self._partial:
                lines.append(self._partial.decode("utf-8", errors="replace"))
                self._partial = b""
            inode = os.fstat(self._file.fileno()).st_ino
            self._file.close()
            self._file = None
            lines.extend(self._skipped_generations(inode))
            if self._open(at_end=False):
                lines.extend(self._drain())
        return lines

    def _skipped_generations(self, inode: int) -> list[str]:
        """Lines of files rotated in after the one we had open (several rotations between polls)."""
        generation = 1
        while True:
            try:
                if os.stat(rotated_path(self.path, generation)).st_ino == inode:
                    break
            except FileNotFoundError:
                return []  # our file is gone already: nothing to place it against
            generation += 1
        lines: list[str] = []
        for newer in range(generation - 1, 0, -1):
            try:
                text = rotated_path(self.path, newer).read_bytes().decode("utf-8", errors="replace")
            except FileNotFoundError:
                continue
            lines.extend(text.removesuffix("\n").split("\n") if text else [])
        return lines

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self, *, at_end: bool) -> bool:
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - held open across polls
        except FileNotFoundError:
            return False
        if at_end:
            self._file.seek(0, os.SEEK_END)
        return True

    def _take_backlog(self) -> list[str]:
        assert self._file is not None
        end = self._file.tell()
        backlog = _last_lines(self._file, end, self.backlog) if self.backlog else []
        self._file.seek(end)
        self.backlog = 0
        return backlog

    def _drain(self) -> list[str]:
        assert self._file is not None
        if os.fstat(self._file.fileno()).st_size < self._file.tell():
            self._file.seek(0)  # truncated in place
        data = self._partial + self._file.read()
        complete, newline, self._partial = data.rpartition(b"\n")
        if not newline:
            return []
        return complete.decode("utf-8", errors="replace").split("\n")

    def _replaced(self) -> bool:
        assert self._file is not None
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return False  # mid-rotation: the new file appears on a later poll
        return current.st_ino != os.fstat(self._file.fileno()).st_ino


async def follow(path: Path, *, backlog: int = 0, poll_interval: float = 0.25) -> AsyncIterator[str]:
    """Yield the last `backlog` lines, then each new line as it is written, across rotations."""
    follower = _Follower(path, backlog)
    try:
        while True:
            for line in await asyncio.to_thread(follower.poll):
                yield line
            await asyncio.sleep(poll_interval)
    finally:
        follower.close()
