"""Gates judged from what the store already knows, inside the engine's step: order, window, reports.

An environment with `promotion.require_signature` gets an implicit first gate, `signature`.

`command` and `smoke` gates do I/O and run outside the transaction (see gate_exec), `load` and
`chaos` in a process of their own (see gate_proc); the types that need the database and SLO work
(slo) say so plainly instead of passing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from conveyor.artifacts import attachments
from conveyor.artifacts.junit import TestSummary
from conveyor.artifacts.sarif import ScanSummary
from conveyor.artifacts.service import get_artifact
from conveyor.pipeline import report_gates
from conveyor.pipeline.guards import Override, WindowPolicy, change_window, require_previous_stage
from conveyor.pipeline.observe import stages_of
from conveyor.pipeline.outcome import GateOutcome
from conveyor.pipeline.records import succeeded_in
from conveyor.spec import Spec
from conveyor.store.tables import Promotion

INLINE = frozenset({"previous-stage", "window", "scan", "tests", "signature"})
NOT_YET = frozenset({"slo"})
# how long the implicit signature gate waits for a signature attached after registration
SIGNATURE_GRACE = timedelta(minutes=10)


def is_inline(gate_type: str) -> bool:
    """Whether the gate is judged inside the step (no process, no network)."""
    return gate_type in INLINE or gate_type in NOT_YET


def unsupported(gate_type: str) -> GateOutcome:
    """The honest verdict for a gate this Conveyor cannot run yet."""
    return GateOutcome(
        "failed",
        f"this Conveyor cannot run '{gate_type}' gates yet, so it cannot vouch for the release; "
        f"remove the gate from promotion.gates or run the check as a `command` gate",
        {"gate_type": gate_type},
    )


def evaluate(
    session: Session, row: Promotion, spec: Spec, kind: str, gate: Any, started: datetime, now: datetime
) -> GateOutcome:
    """Judge one inline gate of type `kind` for `row` at `now` (`gate` is its spec, None if implicit)."""
    if kind == "signature":
        artifact = get_artifact(session, row.service, row.version)
        outcome = report_gates.signature_outcome(
            attachments.signature_key(session, artifact.id),
            list(attachments.trusted_keys(session)),
            artifact=f"{row.service} {row.version}",
            digest=artifact.digest,
        )
        return _wait_for_evidence(outcome, started + SIGNATURE_GRACE, now)
    if kind == "previous-stage":
        verdict = require_previous_stage(
            stages_of(spec), row.environment, succeeded_in(session, row.service, row.digest)
        )
        return GateOutcome("passed" if verdict.allowed else "failed", verdict.reason, {"digest": row.digest})
    if kind == "window":
        policy = WindowPolicy.from_spec(spec.environments[row.environment].windows)
        override = Override(row.override_by, row.override_reason or "") if row.override_by else None
        verdict = change_window(policy, now, override)
        if verdict.allowed:
            return GateOutcome("passed", verdict.reason, {"timezone": policy.timezone})
        return GateOutcome("waiting", verdict.reason, {"timezone": policy.timezone}, verdict.retry_at)
    if kind in ("scan", "tests"):
        return _reports(session, row, gate, started, now)
    return unsupported(kind)


def _reports(session: Session, row: Promotion, gate: Any, started: datetime, now: datetime) -> GateOutcome:
    """Judge attached reports; while a required report is still missing, wait (CI may attach it late)."""
    artifact = get_artifact(session, row.service, row.version)
    name = f"{row.service} {row.version}"
    reports: Sequence[ScanSummary] | Sequence[TestSummary]
    if gate.type == "scan":
        reports = attachments.scan_summaries(session, artifact.id)
        outcome = report_gates.scan_outcome(reports, gate.fail_on, gate.reports, artifact=name)
    else:
        reports = attachments.test_summaries(session, artifact.id)
        outcome = report_gates.tests_outcome(reports, gate.reports, artifact=name)
    attached = {r.name for r in reports}
    missing = set(gate.reports) - attached if gate.reports else not attached
    if not missing:
        return outcome
    return _wait_for_evidence(outcome, started + timedelta(seconds=gate.timeout.seconds), now)


def _wait_for_evidence(outcome: GateOutcome, deadline: datetime, now: datetime) -> GateOutcome:
    """A verdict that failed only for missing evidence waits for it until `deadline` (CI attaches late)."""
    if outcome.verdict != "failed" or now >= deadline:
        return outcome
    waiting = f"{outcome.reason} (waiting for it until {deadline.isoformat(timespec='seconds')})"
    return GateOutcome("waiting", waiting, outcome.evidence)
