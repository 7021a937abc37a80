"""Verdicts of the scan, tests and signature gates from report summaries; pure, one class per gate."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.artifacts.junit import FailedCase, TestSummary, summarize_junit
from conveyor.artifacts.sarif import SEVERITIES, SEVERITY_RANK, Finding, ScanSummary, summarize_sarif
from conveyor.pipeline.report_gates import scan_outcome, signature_outcome, tests_outcome
from conveyor.spec.vocabulary import SEVERITIES as THRESHOLDS
from tests.unit.artifacts.fixtures import JUNIT, SARIF

WEB = "web 1.2.0"


def _scan(name: str, **counts: int) -> ScanSummary:
    worst = tuple(
        Finding(f"{severity.upper()}-{i}", severity, f"{severity} issue")
        for severity in SEVERITIES
        for i in range(counts.get(severity, 0))
    )
    return ScanSummary(name, ("scanner",), {s: counts.get(s, 0) for s in SEVERITIES}, worst[:10])


def _tests(name: str, tests: int, failures: int = 0, errors: int = 0, skipped: int = 0) -> TestSummary:
    failed = tuple(FailedCase(f"case_{i}", "failure", f"assert {i}") for i in range(failures))
    return TestSummary(name, tests, failures, errors, skipped, failed)


class TestScanGate:
    def test_a_missing_required_report_says_how_to_attach_it(self) -> None:
        outcome = scan_outcome([_scan("dependencies")], "high", ["sast"], artifact=WEB)
        assert outcome.verdict == "failed"
        assert outcome.reason == (
            "no 'sast' scan report is attached to web 1.2.0; "
            "attach it with `conveyor artifact attach web 1.2.0 --sarif FILE --name sast`"
        )
        assert outcome.evidence == {"missing": ["sast"], "attached": ["dependencies"]}

    def test_several_missing_reports_are_all_named(self) -> None:
        outcome = scan_outcome([], "high", ["sast", "dependencies"], artifact=WEB)
        assert outcome.reason.startswith(
            "the scan reports 'sast' and 'dependencies' are not attached to web 1.2.0"
        )

    def test_no_report_at_all_fails_even_when_none_is_named(self) -> None:
        outcome = scan_outcome([], "high", [], artifact=WEB)
        assert outcome.verdict == "failed"
        assert outcome.reason.startswith("no scan report is attached to web 1.2.0")

    def test_findings_at_the_threshold_fail_with_counts_and_rule_ids(self) -> None:
        outcome = scan_outcome([_scan("sast", critical=1, high=2, low=5)], "high", [], artifact=WEB)
        assert outcome.verdict == "failed"
        assert outcome.reason.startswith(
            "3 findings at high or worse in web 1.2.0 (1 critical, 2 high), worst: CRITICAL-0, HIGH-0, HIGH-1"
        )
        assert outcome.evidence["blocking"] == 3
        assert outcome.evidence["worst"][0] == {
            "rule_id": "CRITICAL-0",
            "severity": "critical",
            "message": "critical issue",
            "location": None,
            "report": "sast",
        }

    def test_findings_below_the_threshold_pass_with_counts_as_evidence(self) -> None:
        outcome = scan_outcome([_scan("sast", medium=6, low=2)], "high", [])
        assert outcome.verdict == "passed"
        assert outcome.reason == "no finding at high or worse in 1 scan report [sast: 6 medium, 2 low]"
        assert outcome.evidence["reports"]["sast"]["counts"] == {
            "critical": 0,
            "high": 0,
            "medium": 6,
            "low": 2,
            "none": 0,
        }

    def test_named_reports_are_judged_alone(self) -> None:
        reports = [_scan("sast"), _scan("dependencies", critical=4)]
        assert scan_outcome(reports, "high", ["sast"]).verdict == "passed"
        assert scan_outcome(reports, "high", []).verdict == "failed"

    @pytest.mark.parametrize(
        ("fail_on", "verdict"),
        [("critical", "passed"), ("high", "passed"), ("medium", "failed"), ("low", "failed")],
    )
    def test_the_trivy_fixture_against_each_threshold(self, fail_on: str, verdict: str) -> None:
        trivy = summarize_sarif("dependencies", (SARIF / "trivy-alpine-310.sarif.json").read_bytes())
        assert scan_outcome([trivy], fail_on, ["dependencies"]).verdict == verdict

    def test_an_unknown_threshold_is_a_programming_error(self) -> None:
        with pytest.raises(ValueError, match="unknown severity"):
            scan_outcome([], "severe", [])

    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["a", "b", "c"]),
                st.fixed_dictionaries({s: st.integers(0, 3) for s in SEVERITIES}),
            ),
            max_size=4,
            unique_by=lambda item: item[0],
        ),
        st.sampled_from(THRESHOLDS),
        st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
    )
    def test_passes_exactly_when_nothing_is_missing_or_at_the_threshold(
        self, specs: list[tuple[str, dict[str, int]]], fail_on: str, required: list[str]
    ) -> None:
        reports = [_scan(name, **counts) for name, counts in specs]
        judged = [r for r in reports if not required or r.name in required]
        missing = set(required) - {r.name for r in reports}
        blocking = sum(r.at_or_above(fail_on) for r in judged)
        outcome = scan_outcome(reports, fail_on, required)
        assert outcome.passed == (bool(reports) and not missing and blocking == 0)
        for finding in outcome.evidence.get("worst", []):
            assert SEVERITY_RANK[finding["severity"]] >= SEVERITY_RANK[fail_on]


class TestTestsGate:
    def test_a_missing_required_report_says_how_to_attach_it(self) -> None:
        outcome = tests_outcome([_tests("unit", 3)], ["unit", "integration"], artifact=WEB)
        assert outcome.reason == (
            "no 'integration' test report is attached to web 1.2.0; "
            "attach it with `conveyor artifact attach web 1.2.0 --junit FILE --name integration`"
        )

    def test_no_report_at_all_fails(self) -> None:
        assert tests_outcome([], [], artifact=WEB).reason.startswith(
            "no test report is attached to web 1.2.0"
        )

    def test_failures_name_counts_and_the_first_cases(self) -> None:
        jest = summarize_junit("unit", (JUNIT / "jest-junit.xml").read_bytes())
        outcome = tests_outcome([jest], ["unit"], artifact=WEB)
        assert outcome.verdict == "failed"
        assert outcome.reason.startswith(
            "4 tests failed in web 1.2.0 (unit: 4 failures of 6 tests); "
            "first: Test 1 Test 1.1 Failing test — Error: expect(received).toBeTruthy()"
        )
        assert outcome.evidence["reports"]["unit"]["failures"] == 4

    def test_errors_count_as_failures(self) -> None:
        outcome = tests_outcome([_tests("unit", 3, errors=1)], [])
        assert outcome.verdict == "failed" and "unit: 1 error of 3 tests" in outcome.reason

    def test_all_passed(self) -> None:
        go = summarize_junit("unit", (JUNIT / "go-junit-report-skipped.xml").read_bytes())
        outcome = tests_outcome([go, _tests("integration", 4)], [])
        assert outcome.verdict == "passed"
        assert outcome.reason == "5 tests passed in 2 reports, 1 skipped"

    def test_a_report_in_which_nothing_ran_proves_nothing(self) -> None:
        outcome = tests_outcome([_tests("unit", 4), _tests("integration", 2, skipped=2)], [])
        assert outcome.verdict == "failed"
        assert outcome.reason == "the test report 'integration' ran no test"

    @given(
        st.lists(
            st.tuples(st.integers(0, 5), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)),
            min_size=1,
            max_size=4,
        )
    )
    def test_passes_exactly_when_every_report_ran_and_nothing_broke(
        self, specs: list[tuple[int, int, int, int]]
    ) -> None:
        reports = [
            _tests(f"r{i}", passed + failures + errors + skipped, failures, errors, skipped)
            for i, (passed, failures, errors, skipped) in enumerate(specs)
        ]
        clean = all(r.failures == r.errors == 0 and r.ran > 0 for r in reports)
        assert tests_outcome(reports, []).passed == clean


class TestSignatureGate:
    def test_signed_by_a_trusted_key_passes(self) -> None:
        outcome = signature_outcome("ci", ["ci", "release"], artifact=WEB, digest="sha256:" + "a" * 64)
        assert outcome.passed and outcome.reason == "web 1.2.0 is signed by the trusted key 'ci'"
        assert outcome.evidence["signed_by"] == "ci"

    def test_unsigned_fails_with_the_commands_to_fix_it(self) -> None:
        digest = "sha256:" + "a" * 64
        outcome = signature_outcome(None, ["ci"], artifact=WEB, digest=digest)
        assert outcome.verdict == "failed"
        assert "web 1.2.0 has none from a trusted key (ci)" in outcome.reason
        assert f"conveyor artifact sign --key KEY {digest}" in outcome.reason
        assert "conveyor artifact attach web 1.2.0 --signature" in outcome.reason
