"""Pure verdicts of the evidence gates: scan reports, test reports and the artifact's signature.

The promotion engine loads the summaries with `artifacts.attachments` (scan_summaries,
test_summaries, signature_key) and calls these functions; they take no session, clock or file.
When a gate names reports, it judges only those (so two scan gates can hold two reports to two
thresholds); when it names none, it judges every attached report and needs at least one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from conveyor.artifacts.junit import TestSummary
from conveyor.artifacts.sarif import SEVERITIES, SEVERITY_RANK, Finding, ScanSummary
from conveyor.pipeline.outcome import GateOutcome

_SHOWN = 3
_Report = TypeVar("_Report", ScanSummary, TestSummary)


def _quoted(names: Sequence[str]) -> str:
    quoted = [f"'{name}'" for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _select(
    reports: Sequence[_Report], required: Sequence[str], kind: str, flag: str, artifact: str
) -> tuple[list[_Report], GateOutcome | None]:
    """The reports a gate judges, or the failed outcome when some (or all) are missing."""
    present = {report.name for report in reports}
    missing = [name for name in dict.fromkeys(required) if name not in present]
    command = f"conveyor artifact attach {artifact} {flag} FILE --name"
    if missing:
        noun = f"{kind} report" if len(missing) == 1 else f"{kind} reports"
        name = missing[0] if len(missing) == 1 else "NAME"
        return [], GateOutcome(
            "failed",
            f"no {_quoted(missing)} {noun} is attached to {artifact}; attach it with `{command} {name}`"
            if len(missing) == 1
            else f"the {noun} {_quoted(missing)} are not attached to {artifact}; "
            f"attach each with `{command} {name}`",
            {"missing": missing, "attached": sorted(present)},
        )
    if not reports:
        return [], GateOutcome(
            "failed",
            f"no {kind} report is attached to {artifact}; attach one with `{command} NAME`",
            {"missing": [], "attached": []},
        )
    wanted = set(required)
    return [report for report in reports if not wanted or report.name in wanted], None


def _counts_text(counts: dict[str, int]) -> str:
    parts = [f"{counts[severity]} {severity}" for severity in SEVERITIES if counts.get(severity)]
    return ", ".join(parts) or "no findings"


def scan_outcome(
    reports: Sequence[ScanSummary],
    fail_on: str,
    required: Sequence[str],
    *,
    artifact: str = "the artifact",
) -> GateOutcome:
    """Failed when a required report is missing or any finding is at `fail_on` or worse; else passed."""
    if fail_on not in SEVERITY_RANK:
        raise ValueError(f"unknown severity {fail_on!r}")
    judged, missing = _select(reports, required, "scan", "--sarif", artifact)
    if missing is not None:
        return missing
    floor = SEVERITY_RANK[fail_on]
    totals = dict.fromkeys(SEVERITIES, 0)
    worst: list[tuple[str, Finding]] = []
    evidence_reports: dict[str, Any] = {}
    for report in judged:
        for severity in SEVERITIES:
            totals[severity] += report.counts.get(severity, 0)
        worst += [(report.name, f) for f in report.worst if SEVERITY_RANK[f.severity] >= floor]
        evidence_reports[report.name] = {
            "tools": list(report.tools),
            "counts": {severity: report.counts.get(severity, 0) for severity in SEVERITIES},
            "suppressed": report.suppressed,
        }
    blocking = sum(n for severity, n in totals.items() if SEVERITY_RANK[severity] >= floor)
    worst.sort(key=lambda item: -SEVERITY_RANK[item[1].severity])
    evidence: dict[str, Any] = {
        "fail_on": fail_on,
        "blocking": blocking,
        "reports": evidence_reports,
        "worst": [{**finding.to_json(), "report": name} for name, finding in worst],
    }
    per_report = "; ".join(
        f"{name}: {_counts_text(item['counts'])}" for name, item in evidence_reports.items()
    )
    if blocking:
        at_floor = {s: n for s, n in totals.items() if SEVERITY_RANK[s] >= floor}
        rule_ids = list(dict.fromkeys(finding.rule_id for _, finding in worst))
        shown = ", ".join(rule_ids[:_SHOWN]) + (
            f" and {len(rule_ids) - _SHOWN} more" if len(rule_ids) > _SHOWN else ""
        )
        return GateOutcome(
            "failed",
            f"{_plural(blocking, 'finding')} at {fail_on} or worse in {artifact} "
            f"({_counts_text(at_floor)})" + (f", worst: {shown}" if shown else "") + f" [{per_report}]",
            evidence,
        )
    return GateOutcome(
        "passed",
        f"no finding at {fail_on} or worse in {_plural(len(judged), 'scan report')} [{per_report}]",
        evidence,
    )


def tests_outcome(
    reports: Sequence[TestSummary],
    required: Sequence[str],
    *,
    artifact: str = "the artifact",
) -> GateOutcome:
    """Failed when a required report is missing, none is attached, a test failed or errored, or none ran."""
    judged, missing = _select(reports, required, "test", "--junit", artifact)
    if missing is not None:
        return missing
    evidence: dict[str, Any] = {"reports": {report.name: report.to_json() for report in judged}}
    broken = sum(report.failures + report.errors for report in judged)
    if broken:
        cases = [(report.name, case) for report in judged for case in report.failed]
        first = "; ".join(
            f"{case.name}" + (f" — {case.message}" if case.message else "") for _, case in cases[:_SHOWN]
        )
        counts = "; ".join(
            f"{report.name}: {_failure_counts(report)} of {_plural(report.tests, 'test')}"
            for report in judged
            if report.failures or report.errors
        )
        return GateOutcome(
            "failed",
            f"{_plural(broken, 'test')} failed in {artifact} ({counts})"
            + (f"; first: {first}" if first else ""),
            evidence,
        )
    # a report in which nothing ran proves nothing: usually a wrong path or filter in CI
    idle = [report.name for report in judged if report.ran == 0]
    if idle:
        return GateOutcome(
            "failed",
            f"the test {'report' if len(idle) == 1 else 'reports'} {_quoted(idle)} ran no test",
            evidence,
        )
    passed = sum(report.passed for report in judged)
    skipped = sum(report.skipped for report in judged)
    return GateOutcome(
        "passed",
        f"{_plural(passed, 'test')} passed in {_plural(len(judged), 'report')}"
        + (f", {skipped} skipped" if skipped else ""),
        evidence,
    )


tests_outcome.__test__ = False  # type: ignore[attr-defined]  # a gate, not a pytest test


def _failure_counts(report: TestSummary) -> str:
    parts = []
    if report.failures:
        parts.append(_plural(report.failures, "failure"))
    if report.errors:
        parts.append(_plural(report.errors, "error"))
    return " and ".join(parts)


def signature_outcome(
    signed_by: str | None,
    trusted_keys: Sequence[str],
    *,
    artifact: str = "the artifact",
    digest: str | None = None,
) -> GateOutcome:
    """Passed when a trusted key signed the artifact (`signed_by` from `signature_key`); failed otherwise."""
    evidence: dict[str, Any] = {"signed_by": signed_by, "trusted_keys": list(trusted_keys), "digest": digest}
    if signed_by is not None:
        return GateOutcome("passed", f"{artifact} is signed by the trusted key '{signed_by}'", evidence)
    target = digest or "DIGEST"
    return GateOutcome(
        "failed",
        f"this environment requires a signature and {artifact} has none from a trusted key "
        f"({', '.join(trusted_keys) or 'none listed'}); sign it with `conveyor artifact sign --key KEY "
        f"{target} > sig` and attach it with `conveyor artifact attach {artifact} --signature sig`",
        evidence,
    )
