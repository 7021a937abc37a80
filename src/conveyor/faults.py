"""Named pause points for crash tests: `CONVEYOR_FAULT_PAUSE=apply.before_commit=5` sleeps 5 s there.

Crash-safety tests kill the server while it sits at a pause point, which makes "killed in the
middle of a transaction" a repeatable experiment instead of a race. Unset, a pause point costs a
dictionary lookup.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)


def _parse(raw: str) -> dict[str, float]:
    points: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, _, seconds = item.partition("=")
        try:
            points[name] = float(seconds or "0")
        except ValueError:
            log.warning("ignoring malformed CONVEYOR_FAULT_PAUSE entry %r", item)
    return points


def pause_point(name: str) -> None:
    """Sleep here if CONVEYOR_FAULT_PAUSE names this point."""
    raw = os.environ.get("CONVEYOR_FAULT_PAUSE")
    if not raw:
        return
    seconds = _parse(raw).get(name)
    if seconds:
        log.warning("fault pause point %s: sleeping %.1fs", name, seconds)
        time.sleep(seconds)
