"""Reads JUnit XML test reports into counts and the first failing cases; pure, no I/O.

Called by `artifacts/attachments.py` when a report is attached; the tests gate judges the summary.
Accepts a `<testsuites>` root or a bare `<testsuite>` (Maven Surefire), suites nested in suites,
and the dialects of pytest, jest-junit, go-junit-report and Surefire. Counts come from the
`<testcase>` elements when a suite has them, else from the suite's own attributes.

The XML is read with expat into an ElementTree; a DOCTYPE or an entity declaration is refused before
anything is expanded, so entity bombs and external entities never run.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from xml.parsers import expat

from conveyor.errors import InvalidRequest

_FIRST_KEPT = 10
_HINT = "attach the JUnit XML your test runner writes (e.g. pytest --junitxml=report.xml)"


@dataclass(frozen=True)
class FailedCase:
    """A test case that failed or errored, with the first line of what it said."""

    name: str
    outcome: Literal["failure", "error"]
    message: str

    def to_json(self) -> dict[str, str]:
        """The JSON form kept in a test summary."""
        return {"name": self.name, "outcome": self.outcome, "message": self.message}


@dataclass(frozen=True)
class TestSummary:
    """What one attached test report says: counts and the first failing cases."""

    __test__: ClassVar[bool] = False  # not a pytest test class, whatever its name

    name: str
    tests: int
    failures: int
    errors: int
    skipped: int
    failed: tuple[FailedCase, ...] = ()

    @property
    def passed(self) -> int:
        """Tests that ran and neither failed nor errored."""
        return max(self.tests - self.failures - self.errors - self.skipped, 0)

    @property
    def ran(self) -> int:
        """Tests that ran (not skipped)."""
        return max(self.tests - self.skipped, 0)

    def to_json(self) -> dict[str, Any]:
        """The JSON form stored with the attachment."""
        return {
            "tests": self.tests,
            "failures": self.failures,
            "errors": self.errors,
            "skipped": self.skipped,
            "passed": self.passed,
            "failed": [case.to_json() for case in self.failed],
        }

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any]) -> TestSummary:
        """Rebuild a summary from `to_json()` output."""
        return cls(
            name=name,
            tests=int(data.get("tests", 0)),
            failures=int(data.get("failures", 0)),
            errors=int(data.get("errors", 0)),
            skipped=int(data.get("skipped", 0)),
            failed=tuple(
                FailedCase(str(item["name"]), item["outcome"], str(item.get("message", "")))
                for item in data.get("failed") or ()
            ),
        )


class _Refused(Exception):
    """Raised from inside expat to stop at a DOCTYPE or entity declaration."""


def _invalid(what: str, hint: str = _HINT) -> InvalidRequest:
    return InvalidRequest(f"the file is not a JUnit XML report: {what}", hint=hint)


def _refuse(*_: Any) -> Any:
    raise _Refused


def parse_xml(content: bytes) -> ET.Element:
    """Parse XML without DTDs or entities; InvalidRequest when it is not well-formed or declares any."""
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    parser.StartElementHandler = lambda tag, attrs: builder.start(_local(tag), attrs)
    parser.EndElementHandler = lambda tag: builder.end(_local(tag))
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(content, True)
    except _Refused:
        raise _invalid(
            "it declares a DOCTYPE or entities, which Conveyor never reads",
            "test runners do not write DOCTYPEs; attach the report as the runner wrote it",
        ) from None
    except expat.ExpatError as exc:
        raise _invalid(
            f"it is not well-formed XML ({expat.ErrorString(exc.code)} at line {exc.lineno}, "
            f"column {exc.offset + 1})"
        ) from None
    return builder.close()


def _local(tag: str) -> str:
    return tag.rsplit(":", 1)[-1]


def _not_xml(content: bytes) -> InvalidRequest | None:
    head = content.lstrip()[:1]
    if head in (b"{", b"["):
        return _invalid(
            "it is JSON" + (", a SARIF scan report" if b'"runs"' in content[:65536] else ""),
            "attach a SARIF scan report with --sarif, and JUnit XML with --junit",
        )
    if not head:
        return _invalid("it is empty")
    return None


def summarize_junit(name: str, content: bytes) -> TestSummary:
    """Parse a JUnit XML report and summarize it under the report name `name`."""
    problem = _not_xml(content)
    if problem:
        raise problem
    root = parse_xml(content)
    if root.tag not in ("testsuites", "testsuite"):
        raise _invalid(f"its root element is <{root.tag}>, not <testsuites> or <testsuite>")
    tests = failures = errors = skipped = 0
    failed: list[FailedCase] = []
    for suite in _suites(root):
        cases = [child for child in suite if child.tag == "testcase"]
        if not cases:
            if not any(child.tag == "testsuite" for child in suite):
                tests += _count(suite, "tests")
                failures += _count(suite, "failures")
                errors += _count(suite, "errors")
                skipped += _count(suite, "skipped") + _count(suite, "disabled")
            continue
        for case in cases:
            tests += 1
            outcome = _outcome(case)
            if outcome == "skipped":
                skipped += 1
            elif outcome is not None:
                if outcome == "failure":
                    failures += 1
                else:
                    errors += 1
                if len(failed) < _FIRST_KEPT:
                    failed.append(FailedCase(_case_name(case), outcome, _case_message(case, outcome)))
    return TestSummary(name, tests, failures, errors, skipped, tuple(failed))


def _suites(root: ET.Element) -> Iterator[ET.Element]:
    if root.tag == "testsuite":
        yield root
    for suite in root.iter("testsuite"):
        if suite is not root:
            yield suite


def _count(suite: ET.Element, key: str) -> int:
    try:
        return max(int(float(suite.get(key, "0"))), 0)
    except (ValueError, OverflowError):  # "abc", or "inf" / "1e400"
        raise _invalid(
            f"suite '{suite.get('name', '?')}' has {key}={suite.get(key)!r}, not a number"
        ) from None


def _outcome(case: ET.Element) -> Literal["failure", "error", "skipped"] | None:
    tags = {child.tag for child in case}
    if "error" in tags:
        return "error"
    if "failure" in tags:
        return "failure"
    if "skipped" in tags:
        return "skipped"
    return None


def _case_name(case: ET.Element) -> str:
    name = (case.get("name") or "").strip() or "(unnamed)"
    classname = (case.get("classname") or "").strip()
    if classname and not name.startswith(classname):
        return f"{classname}.{name}"
    return name


def _case_message(case: ET.Element, outcome: str) -> str:
    element = case.find(outcome)
    if element is None:
        return ""
    for text in (element.get("message"), element.get("type"), element.text):
        first = next((line.strip() for line in (text or "").splitlines() if line.strip()), "")
        if first:
            return first[:200]
    return ""
