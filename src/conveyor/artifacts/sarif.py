"""Reads SARIF 2.1.0 scan reports into findings with one normalized severity; pure, no I/O.

Called by `artifacts/attachments.py` when a report is attached; the scan gate judges the summary.
Scanners put severity in different places, so the first of these that says something wins:

1. `properties.security-severity` of the result, then of its rule: a CVSS score
   (≥ 9 critical, ≥ 7 high, ≥ 4 medium, > 0 low, 0 none) — GitHub code scanning's convention;
2. a severity word in the result's or rule's `properties` (`severity`, `problem.severity`) or `tags`
   (Trivy tags rules `CRITICAL`, `HIGH`, `MEDIUM`, `LOW`);
3. the SARIF `level` of the result, else its rule's `defaultConfiguration.level`, else `warning`
   (error → high, warning → medium, note → low, none → none).

A result whose `kind` is not `fail` (pass, notApplicable, informational, …) is not a finding, and a
result with an accepted suppression is counted apart and never fails a gate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import InvalidRequest

SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low", "none")
"""Normalized severities, worst first."""
SEVERITY_RANK: dict[str, int] = {name: len(SEVERITIES) - i for i, name in enumerate(SEVERITIES)}

_LEVELS = {"error": "high", "warning": "medium", "note": "low", "none": "none"}
_WORDS = {
    "critical": "critical",
    "blocker": "critical",
    "high": "high",
    "error": "high",
    "major": "high",
    "medium": "medium",
    "moderate": "medium",
    "warning": "medium",
    "low": "low",
    "minor": "low",
    "note": "low",
    "recommendation": "low",
    "info": "none",
    "informational": "none",
    "negligible": "none",
    "none": "none",
}
_WORST_KEPT = 10
_HINT = "attach the SARIF 2.1.0 file your scanner writes (e.g. trivy --format sarif, grype -o sarif)"


@dataclass(frozen=True)
class Finding:
    """One result of a scan: which rule, how bad, what it says and where."""

    rule_id: str
    severity: str
    message: str
    location: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form kept in a scan summary."""
        return {
            "rule_id": self.rule_id,
            "severity": self.severity,
            "message": self.message,
            "location": self.location,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        """Rebuild a finding from `to_json()` output."""
        return cls(str(data["rule_id"]), str(data["severity"]), str(data["message"]), data.get("location"))


@dataclass(frozen=True)
class ScanSummary:
    """What one attached scan report found: counts per severity and the worst findings."""

    name: str
    tools: tuple[str, ...]
    counts: Mapping[str, int]
    worst: tuple[Finding, ...] = ()
    suppressed: int = 0

    @property
    def total(self) -> int:
        """Findings counted (suppressed ones are not)."""
        return sum(self.counts.values())

    def at_or_above(self, severity: str) -> int:
        """How many findings have `severity` or a worse one."""
        floor = SEVERITY_RANK[severity]
        return sum(n for name, n in self.counts.items() if SEVERITY_RANK[name] >= floor)

    def to_json(self) -> dict[str, Any]:
        """The JSON form stored with the attachment."""
        return {
            "tools": list(self.tools),
            "counts": {name: self.counts.get(name, 0) for name in SEVERITIES},
            "total": self.total,
            "suppressed": self.suppressed,
            "worst": [finding.to_json() for finding in self.worst],
        }

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any]) -> ScanSummary:
        """Rebuild a summary from `to_json()` output."""
        counts = data.get("counts") or {}
        return cls(
            name=name,
            tools=tuple(data.get("tools") or ()),
            counts={severity: int(counts.get(severity, 0)) for severity in SEVERITIES},
            worst=tuple(Finding.from_json(item) for item in data.get("worst") or ()),
            suppressed=int(data.get("suppressed", 0)),
        )


@dataclass
class _Counter:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SEVERITIES, 0))
    findings: list[Finding] = field(default_factory=list)
    suppressed: int = 0


def _invalid(what: str, hint: str = _HINT) -> InvalidRequest:
    return InvalidRequest(f"the file is not a SARIF 2.1.0 report: {what}", hint=hint)


def load_sarif(content: bytes) -> dict[str, Any]:
    """The parsed SARIF log, or InvalidRequest naming what is wrong and the fix."""
    stripped = content.lstrip()
    if not stripped:
        raise _invalid("it is empty")
    if stripped.startswith(b"<"):
        looks_junit = b"<testsuite" in stripped[:4096]
        raise _invalid(
            "it is XML" + (", a JUnit test report" if looks_junit else ""),
            "attach a JUnit report with --junit, and a scan report as SARIF JSON with --sarif"
            if looks_junit
            else _HINT,
        )
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _invalid("it is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _invalid(f"it is not JSON (line {exc.lineno}, column {exc.colno})") from None
    except ValueError:
        raise _invalid("it is not JSON") from None
    except RecursionError:
        raise _invalid("it nests JSON too deeply to be a SARIF report") from None
    if not isinstance(data, dict):
        raise _invalid(f"it is a JSON {type(data).__name__}, not an object with `version` and `runs`")
    version = data.get("version")
    if "runs" not in data:
        raise _invalid("it has no `runs`")
    if version != "2.1.0":
        shown = "missing" if version is None else repr(version)
        raise _invalid(
            f"its version is {shown}, not 2.1.0",
            "Conveyor reads SARIF 2.1.0 (the OASIS standard); configure your scanner to write it",
        )
    if not isinstance(data["runs"], list):
        raise _invalid("`runs` is not a list")
    return data


def summarize_sarif(name: str, content: bytes) -> ScanSummary:
    """Parse a SARIF report and summarize it under the report name `name`."""
    data = load_sarif(content)
    counter = _Counter()
    tools: list[str] = []
    for index, run in enumerate(data["runs"]):
        if not isinstance(run, dict):
            raise _invalid(f"runs[{index}] is not an object")
        driver = _mapping(_mapping(run.get("tool")).get("driver"))
        tool = driver.get("name")
        if isinstance(tool, str) and tool and tool not in tools:
            tools.append(tool)
        rules = _rules(driver)
        results = run.get("results") or []
        if not isinstance(results, list):
            raise _invalid(f"runs[{index}].results is not a list")
        for result in results:
            if isinstance(result, dict):
                _count(counter, result, rules)
    worst = sorted(counter.findings, key=lambda f: -SEVERITY_RANK[f.severity])[:_WORST_KEPT]
    return ScanSummary(name, tuple(tools), counter.counts, tuple(worst), counter.suppressed)


def findings(content: bytes) -> list[Finding]:
    """Every finding of a SARIF report (suppressed ones left out), in file order."""
    data = load_sarif(content)
    counter = _Counter()
    for run in data["runs"]:
        if not isinstance(run, dict):
            continue
        rules = _rules(_mapping(_mapping(run.get("tool")).get("driver")))
        for result in run.get("results") or []:
            if isinstance(result, dict):
                _count(counter, result, rules, keep_all=True)
    return counter.findings


@dataclass(frozen=True)
class _Rules:
    by_index: Sequence[Mapping[str, Any]]
    by_id: Mapping[str, Mapping[str, Any]]


def _rules(driver: Mapping[str, Any]) -> _Rules:
    listed = driver.get("rules")
    rules = [rule for rule in listed if isinstance(rule, dict)] if isinstance(listed, list) else []
    return _Rules(rules, {str(rule["id"]): rule for rule in rules if "id" in rule})


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _rule_for(result: Mapping[str, Any], rules: _Rules) -> Mapping[str, Any]:
    index = result.get("ruleIndex")
    if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(rules.by_index):
        return rules.by_index[index]
    rule_id = _rule_id(result)
    return rules.by_id.get(rule_id, {}) if rule_id else {}


def _rule_id(result: Mapping[str, Any]) -> str | None:
    rule_id = result.get("ruleId")
    if isinstance(rule_id, str) and rule_id:
        return rule_id
    descriptor = _mapping(result.get("rule"))
    found = descriptor.get("id")
    return found if isinstance(found, str) and found else None


def _suppressed(result: Mapping[str, Any]) -> bool:
    suppressions = result.get("suppressions")
    if not isinstance(suppressions, list):
        return False
    # SARIF: a suppression without a status counts as accepted
    return any(
        isinstance(item, dict) and item.get("status", "accepted") == "accepted" for item in suppressions
    )


def _count(counter: _Counter, result: Mapping[str, Any], rules: _Rules, keep_all: bool = False) -> None:
    kind = result.get("kind", "fail")
    if kind != "fail":
        return
    if _suppressed(result):
        counter.suppressed += 1
        return
    rule = _rule_for(result, rules)
    severity = severity_of(result, rule)
    counter.counts[severity] += 1
    if severity != "none" or keep_all:
        rule_id = _rule_id(result) or str(rule.get("id") or "(no rule id)")
        counter.findings.append(Finding(rule_id, severity, _message(result, rule), _location(result)))


def severity_of(result: Mapping[str, Any], rule: Mapping[str, Any]) -> str:
    """The normalized severity of one SARIF result, given its rule descriptor (see the module doc)."""
    result_props, rule_props = _mapping(result.get("properties")), _mapping(rule.get("properties"))
    for props in (result_props, rule_props):
        score = cvss_severity(props.get("security-severity"))
        if score is not None:
            return score
    for props in (result_props, rule_props):
        for key in ("severity", "problem.severity"):
            word = _WORDS.get(str(props.get(key, "")).strip().lower())
            if word:
                return word
        tags = props.get("tags")
        if isinstance(tags, list):
            found = [_WORDS.get(str(tag).strip().lower()) for tag in tags]
            ranked = [word for word in found if word]
            if ranked:
                return max(ranked, key=SEVERITY_RANK.__getitem__)
    level = result.get("level")
    if not isinstance(level, str) or level not in _LEVELS:
        level = _mapping(rule.get("defaultConfiguration")).get("level")
    return _LEVELS.get(level, "medium") if isinstance(level, str) else "medium"  # SARIF's default: warning


def cvss_severity(value: Any) -> str | None:
    """The severity of a CVSS score (a number or numeric text from 0 to 10); None when it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        score = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(score) or not 0 <= score <= 10:
        return None
    if score >= 9:
        return "critical"
    if score >= 7:
        return "high"
    if score >= 4:
        return "medium"
    return "low" if score > 0 else "none"


def _message(result: Mapping[str, Any], rule: Mapping[str, Any]) -> str:
    message = _mapping(result.get("message"))
    text = message.get("text")
    if not isinstance(text, str) or not text.strip():
        text = _mapping(rule.get("shortDescription")).get("text") or ""
    first = next((line.strip() for line in str(text).splitlines() if line.strip()), "")
    return first[:200]


def _location(result: Mapping[str, Any]) -> str | None:
    locations = result.get("locations")
    if not isinstance(locations, list) or not locations:
        return None
    physical = _mapping(_mapping(locations[0]).get("physicalLocation"))
    uri = _mapping(physical.get("artifactLocation")).get("uri")
    if not isinstance(uri, str) or not uri:
        return None
    line = _mapping(physical.get("region")).get("startLine")
    return f"{uri}:{line}" if isinstance(line, int) and not isinstance(line, bool) else uri
