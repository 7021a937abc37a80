"""Instance log files: size rotation, retention by age, tail from the end, follow across rotations."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

from conveyor.runtime.local.instance_logs import (
    InstanceLog,
    follow,
    instance_log_path,
    prune_rotated,
    rotated_path,
    tail,
)

DAY = 86400.0
NOW = 1_800_000_000.0  # a fixed wall-clock instant


def _lines(first: int, count: int) -> bytes:
    return b"".join(b"line %04d\n" % n for n in range(first, first + count))  # 10 bytes each


class TestLayout:
    def test_one_file_per_instance_under_its_environment(self, tmp_path: Path) -> None:
        path = instance_log_path(tmp_path, "staging", "shop", "1.2.0+build.7", 3)
        assert path == tmp_path / "staging" / "shop-1.2.0+build.7-3.log"
        assert rotated_path(path, 2) == tmp_path / "staging" / "shop-1.2.0+build.7-3.log.2"


class TestRotation:
    def test_rotates_before_exceeding_max_bytes_and_keeps_lines_whole(self, tmp_path: Path) -> None:
        path = tmp_path / "dev" / "app-1-0.log"
        log = InstanceLog(path, max_bytes=95, backups=3)
        log.write(_lines(0, 25))
        log.close()
        assert rotated_path(path, 2).read_bytes() == _lines(0, 9)
        assert rotated_path(path, 1).read_bytes() == _lines(9, 9)
        assert path.read_bytes() == _lines(18, 7)

    def test_keeps_only_the_configured_number_of_backups(self, tmp_path: Path) -> None:
        path = tmp_path / "app.log"
        log = InstanceLog(path, max_bytes=50, backups=2)
        for n in range(20):
            log.write(_lines(n * 5, 5))
        log.close()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["app.log", "app.log.1", "app.log.2"]
        assert path.read_bytes() == _lines(95, 5)
        assert rotated_path(path, 2).read_bytes() == _lines(85, 5)

    def test_without_backups_the_old_content_is_dropped(self, tmp_path: Path) -> None:
        path = tmp_path / "app.log"
        log = InstanceLog(path, max_bytes=20, backups=0)
        log.write(_lines(0, 3))
        log.close()
        assert [p.name for p in tmp_path.iterdir()] == ["app.log"]
        assert path.read_bytes() == _lines(2, 1)

    def test_a_line_longer_than_max_bytes_is_split(self, tmp_path: Path) -> None:
        path = tmp_path / "app.log"
        log = InstanceLog(path, max_bytes=8, backups=5)
        log.write(b"abcdefghijklmnopqrst\n")
        log.close()
        pieces = [rotated_path(path, n).read_bytes() for n in (2, 1)] + [path.read_bytes()]
        assert pieces == [b"abcdefgh", b"ijklmnop", b"qrst\n"]

    def test_appends_to_an_existing_file_and_counts_its_size(self, tmp_path: Path) -> None:
        path = tmp_path / "app.log"
        path.write_bytes(_lines(0, 9))
        log = InstanceLog(path, max_bytes=100, backups=1)
        log.write(_lines(9, 2))
        log.close()
        assert rotated_path(path, 1).read_bytes() == _lines(0, 10)
        assert path.read_bytes() == _lines(10, 1)


class TestRetention:
    def _rotated(self, directory: Path, name: str, age_days: float) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / name
        path.write_text("old\n")
        moment = NOW - age_days * DAY
        os.utime(path, (moment, moment))
        return path

    def test_deletes_rotated_files_older_than_the_retention(self, tmp_path: Path) -> None:
        old = self._rotated(tmp_path / "dev", "app-1-0.log.3", age_days=15)
        older = self._rotated(tmp_path / "prod", "app-2-1.log.1", age_days=40)
        recent = self._rotated(tmp_path / "dev", "app-1-0.log.1", age_days=13.9)
        removed = prune_rotated(tmp_path, retention_days=14, now=NOW)
        assert sorted(removed) == sorted([old, older])
        assert recent.exists() and not old.exists() and not older.exists()

    def test_never_deletes_current_logs_or_other_files(self, tmp_path: Path) -> None:
        current = self._rotated(tmp_path / "dev", "app-1-0.log", age_days=100)
        note = self._rotated(tmp_path / "dev", "notes.log.txt", age_days=100)
        assert prune_rotated(tmp_path, retention_days=1, now=NOW) == []
        assert current.exists() and note.exists()

    def test_a_missing_directory_is_nothing_to_prune(self, tmp_path: Path) -> None:
        assert prune_rotated(tmp_path / "none", retention_days=1, now=NOW) == []


class TestTail:
    def test_returns_the_last_lines(self, tmp_path: Path) -> None:
        path = tmp_path / "app.log"
        path.write_bytes(_lines(0, 100))
        assert tail(path, 3) == ["line 0097", "line 0098", "line 0099"]

    def test_reads_across_many_blocks(self, tmp_path: Path) -> None:
        path = tmp_path / "app.log"
        path.write_bytes(_lines(0, 9000) + b"x" * 200_000 + b"\nlast")
        assert tail(path, 2) == ["x" * 200_000, "last"]
        assert tail(path, 9002)[0] == "line 0000"

    def test_continues_into_rotated_files(self, tmp_path: Path) -> None:
        path = tmp_path / "app.log"
        log = InstanceLog(path, max_bytes=50, backups=3)
        log.write(_lines(0, 12))
        log.close()
        assert tail(path, 4) == ["line 0008", "line 0009", "line 0010", "line 0011"]
        assert tail(path, 100) == [f"line {n:04d}" for n in range(12)]

    def test_a_short_file_gives_what_it_has(self, tmp_path: Path) -> None:
        path = tmp_path / "app.log"
        path.write_bytes(b"only\n\nlines\n")
        assert tail(path, 10) == ["only", "", "lines"]
        assert tail(path, 0) == []

    def test_a_missing_file_has_no_lines(self, tmp_path: Path) -> None:
        assert tail(tmp_path / "none.log", 5) == []


async def _collect(lines: AsyncIterator[str], count: int) -> list[str]:
    got: list[str] = []
    async for line in lines:
        got.append(line)
        if len(got) == count:
            break
    return got


class TestFollow:
    def test_yields_the_backlog_then_new_lines(self, tmp_path: Path) -> None:
        path = tmp_path / "app.log"
        path.write_bytes(_lines(0, 5))

        async def scenario() -> list[str]:
            stream = follow(path, backlog=2, poll_interval=0.01)
            reader = asyncio.create_task(_collect(stream, 5))
            await asyncio.sleep(0.05)
            with open(path, "ab") as fh:
                fh.write(b"new one\nnew ")
                fh.flush()
                await asyncio.sleep(0.05)
                fh.write(b"two\nthird\n")
            return await asyncio.wait_for(reader, 5)

        assert asyncio.run(scenario()) == ["line 0003", "line 0004", "new one", "new two", "third"]

    def test_survives_rotation(self, tmp_path: Path) -> None:
        path = tmp_path / "app.log"
        log = InstanceLog(path, max_bytes=30, backups=2)
        log.write(_lines(0, 1))

        async def scenario() -> list[str]:
            stream = follow(path, poll_interval=0.01)
            reader = asyncio.create_task(_collect(stream, 7))
            await asyncio.sleep(0.05)
            for n in range(1, 8):
                log.write(_lines(n, 1))  # rotates every third line
                await asyncio.sleep(0.03)
            return await asyncio.wait_for(reader, 5)

        assert asyncio.run(scenario()) == [f"line {n:04d}" for n in range(1, 8)]
        log.close()

    def test_loses_no_line_when_several_rotations_happen_between_polls(self, tmp_path: Path) -> None:
        path = tmp_path / "app.log"
        log = InstanceLog(path, max_bytes=30, backups=5)
        log.write(_lines(0, 1))

        async def scenario() -> list[str]:
            reader = asyncio.create_task(_collect(follow(path, poll_interval=0.5), 10))
            await asyncio.sleep(0.1)  # the first poll opened the file; the next is 0.4 s away
            log.write(_lines(1, 10))  # three rotations at once
            return await asyncio.wait_for(reader, 5)

        assert asyncio.run(scenario()) == [f"line {n:04d}" for n in range(1, 11)]
        log.close()

    def test_waits_for_a_file_that_does_not_exist_yet(self, tmp_path: Path) -> None:
        path = tmp_path / "later.log"

        async def scenario() -> list[str]:
            reader = asyncio.create_task(_collect(follow(path, backlog=10, poll_interval=0.01), 2))
            await asyncio.sleep(0.05)
            path.write_bytes(b"first\nsecond\n")
            return await asyncio.wait_for(reader, 5)

        assert asyncio.run(scenario()) == ["first", "second"]

    def test_reads_from_the_start_after_truncation(self, tmp_path: Path) -> None:
        path = tmp_path / "app.log"
        path.write_bytes(_lines(0, 50))

        async def scenario() -> list[str]:
            reader = asyncio.create_task(_collect(follow(path, poll_interval=0.01), 1))
            await asyncio.sleep(0.05)
            path.write_bytes(b"fresh\n")
            return await asyncio.wait_for(reader, 5)

        assert asyncio.run(scenario()) == ["fresh"]
