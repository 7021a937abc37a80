"""The result every gate check returns: a verdict, the reason in words, and the evidence behind it.

Pure data shared by the gate evaluators (scan, tests, window, previous-stage) and the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

GateVerdict = Literal["passed", "failed", "waiting"]


@dataclass(frozen=True)
class GateOutcome:
    """A gate's answer; `waiting` carries when to look again (None: look again at the next tick)."""

    verdict: GateVerdict
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    retry_at: datetime | None = None

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"
