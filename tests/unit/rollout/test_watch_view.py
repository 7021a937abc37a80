"""The live rollout view renders every phase a rollout goes through, with and without live traffic."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from conveyor.cli.rollout_cmds import _summary, _view


def rollout(phase: str, step: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "service": "web",
        "new_version": "1.1.0",
        "stable_version": "1.0.0",
        "strategy": "canary",
        "phase": phase,
        "step": step,
        "step_words": "step 2 (10%)" if phase == "progressing" else phase,
        "steps": [{"weight_bp": w, "pause_s": 60.0, "manual": False} for w in (100, 1000, 10_000)],
        "weights": {"1.1.0": 1000, "1.0.0": 9000},
        "step_started_at": "2026-11-28T12:00:00.000000Z",
        "step_pause_s": 60.0,
        "next_analysis_at": "2026-11-28T12:00:05.000000Z",
        "paused": phase == "progressing",
        "pause_reason": "paused by sam",
        "promotion": 7,
        "promotion_state": "rolling_out",
        "reason": "holding",
        "analysis_runs": runs,
    }


RUN = {"id": 1, "at": "2026-11-28T12:00:05.1Z", "step": 1, "outcome": "pass", "reason": "error rate 0%"}


@pytest.mark.parametrize("phase,step", [("preview", -1), ("progressing", 1), ("aborted", 1), ("hot", 2)])
@pytest.mark.parametrize("runs", [[], [RUN]])
@pytest.mark.parametrize("live", [None, {"1.1.0": {"rps": 4.2, "error_rate": 0.5, "p99_ms": 31.0}}])
def test_the_view_renders(
    phase: str, step: int, runs: list[dict[str, Any]], live: dict[str, Any] | None
) -> None:
    console = Console(record=True, width=120)
    console.print(_view({"environment": "production", "rollout": rollout(phase, step, runs), "live": live}))
    text = console.export_text()
    assert "1.0.0 → 1.1.0" in text and "1.0.0" in text
    if live:
        assert "50.00%" in text and "31 ms" in text
    if runs:
        assert "pass: error rate 0%" in text
    assert _summary(rollout(phase, step, runs)).startswith("web 1.0.0 → 1.1.0 (canary)")
