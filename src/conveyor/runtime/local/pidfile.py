"""The supervisor's record of the process groups it runs, so that a restarted agent ends the orphans.

Instances run in their own sessions, so they outlive an agent killed with SIGKILL. The supervisor
rewrites this file after every start and exit; on start it ends the groups a previous run left.
A recorded leader is signalled only when it is provably the same process (same start time in
/proc), or when it is gone but members of its group remain (a group id is never reused while any
member lives).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("conveyor.supervisor")


@dataclass(frozen=True)
class ProcessRecord:
    """One process group the supervisor started: its instance key, leader pid and leader start time."""

    key: str
    pid: int
    start_ticks: int | None


def start_ticks(pid: int) -> int | None:
    """The kernel's start time of `pid` in clock ticks since boot (None without /proc or process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: fields resume after the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def write_records(path: Path, records: Iterable[ProcessRecord]) -> None:
    """Replace the record file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_text(json.dumps([asdict(r) for r in records], indent=1) + "\n")
    os.replace(scratch, path)


def read_records(path: Path) -> list[ProcessRecord]:
    """The records in the file; none when it is missing or unreadable."""
    try:
        raw = json.loads(path.read_text())
        return [ProcessRecord(str(r["key"]), int(r["pid"]), r.get("start_ticks")) for r in raw]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("ignoring unreadable process record file %s: %s", path, exc)
        return []


def _ours(record: ProcessRecord) -> bool:
    if _alive(record.pid):
        return record.start_ticks is not None and start_ticks(record.pid) == record.start_ticks
    return _group_alive(record.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_alive(pgid: int) -> bool:
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    # zombies count as gone: an orphan's zombie waits for init, which may be slow to reap it
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _any_group_alive(records: list[ProcessRecord]) -> bool:
    return any(_group_alive(r.pid) for r in records)


def signal_group(pgid: int, sig: int) -> None:
    """Send `sig` to a process group; nothing happens when the group is gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def end_orphans(path: Path, *, grace: float) -> list[ProcessRecord]:
    """SIGTERM the groups a previous supervisor left running, SIGKILL them after `grace`; return them."""
    orphans = await asyncio.to_thread(lambda: [r for r in read_records(path) if _ours(r)])
    for record in orphans:
        log.warning("ending instance %s (pid %d) left running by a previous agent", record.key, record.pid)
        signal_group(record.pid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while loop.time() < deadline and await asyncio.to_thread(_any_group_alive, orphans):
        await asyncio.sleep(0.05)
    for record in orphans:
        signal_group(record.pid, signal.SIGKILL)
    return orphans
