"""Pure: say in plain words why a promotion is where it is, from the engine's own decision.

`conveyor explain`, `conveyor promotion show` and the API's explain document all render this.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from conveyor.pipeline.approvals import tally
from conveyor.pipeline.decide import TERMINAL_STATES, Decision, Observations
from conveyor.pipeline.guards import change_window

MARKS = {True: "✓", False: "✗", None: "…"}
OUTPUT_LINES = 12


def _ago(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    seconds = (
        datetime.fromisoformat(end.replace("Z", "+00:00"))
        - datetime.fromisoformat(start.replace("Z", "+00:00"))
    ).total_seconds()
    return f" ({seconds:.1f}s)"


def gate_lines(runs: Sequence[dict[str, Any]]) -> list[str]:
    """One line per gate's latest run, with the output tail of a failed command."""
    lines: list[str] = []
    for run in runs:
        ok = {"passed": True, "failed": False}.get(run["state"])
        mark = "–" if run["state"] in ("stopped", "lost") else MARKS[ok]
        attempt = f" [attempt {run['attempt']}]" if run["attempt"] > 1 else ""
        phase = " (after deploy)" if run["phase"] == "after" else ""
        reason = run["reason"] or run["state"]
        lines.append(
            f"  {mark} {run['name']}{phase}: {reason}"
            f"{'' if run['type'] == 'command' else _ago(run['started_at'], run['finished_at'])}{attempt}"
        )
        evidence = run.get("evidence") or {}
        output = str(evidence.get("output") or "").rstrip()
        if ok is False and output:
            tail = output.splitlines()[-OUTPUT_LINES:]
            lines += [f"      | {line}" for line in tail]
    return lines


def explain(
    promotion: dict[str, Any],
    observations: Observations | None,
    decision: Decision | None,
    runs: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """The explanation document: a summary, the checks, approvals, window, and lines to print."""
    p = promotion
    lines = [
        f"Promotion {p['id']}: {p['service']} {p['version']} → {p['environment']} "
        f"({p['trigger']}, requested by {p['requested_by']} at {p['requested_at']})",
    ]
    state = p["state"]
    summary = p["reason"] if state in TERMINAL_STATES or decision is None else decision.reason
    lines.append(f"State: {state} — {summary}")
    if p.get("override"):
        lines.append(f"Override: by {p['override']['by']}: {p['override']['reason']}")
    document: dict[str, Any] = {"promotion": p["id"], "state": state, "summary": summary}
    if runs:
        lines.append("Gates:")
        lines += gate_lines(runs)
    if observations is not None:
        document["approvals"] = _approvals(observations, lines)
        document["window"] = _window(observations, lines)
    if decision is not None and state not in TERMINAL_STATES:
        document["checks"] = [c.to_json() for c in decision.checks]
        if decision.state != state:
            lines.append(f"Next: the engine moves it to {decision.state} at its next step")
        elif decision.retry_at is not None:
            lines.append(f"Next: looks again at {decision.retry_at.isoformat(timespec='seconds')}")
    document["lines"] = lines
    return document


def _approvals(o: Observations, lines: list[str]) -> dict[str, Any] | None:
    policy = o.approvals
    if policy.required == 0:
        return None
    result = tally(policy, o.requested_by, o.release, o.reviews, o.now)
    who = sorted(policy.approvers) + [f"any {r}" for r in sorted(policy.approver_roles)]
    lines.append(f"Approvals: {len(result.approvals)} of {policy.required} — {result.explain(policy)}")
    if not policy.allow_self_approval:
        lines.append(f"  the requester ({o.requested_by}) cannot approve")
    for user, why in result.ignored:
        lines.append(f"  not counted: {user}: {why}")
    return {
        "required": policy.required,
        "status": result.status,
        "approved_by": list(result.approvals),
        "rejected_by": result.rejected_by,
        "missing": result.missing,
        "who_may_approve": who or ["an admin"],
        "not_counted": [{"user": u, "why": w} for u, w in result.ignored],
        "release": o.release,
    }


def _window(o: Observations, lines: list[str]) -> dict[str, Any] | None:
    if not o.windows.allow and not o.windows.freezes:
        return None
    verdict = change_window(o.windows, o.now, o.override)
    opens = verdict.retry_at.isoformat(timespec="minutes") if verdict.retry_at else None
    lines.append(f"Window: {'open' if verdict.allowed else 'closed'} — {verdict.reason}")
    return {"open": verdict.allowed, "reason": verdict.reason, "opens_at": opens}


def evidence_of(raw: str) -> dict[str, Any]:
    """Stored evidence JSON as a dict (an empty one when unreadable)."""
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
