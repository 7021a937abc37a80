"""JUnit XML reports from real runners, counted; anything else refused with the reason and the fix."""

from __future__ import annotations

import json
from xml.sax.saxutils import quoteattr

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.artifacts.junit import TestSummary, summarize_junit
from conveyor.errors import InvalidRequest
from tests.unit.artifacts.fixtures import JUNIT, SARIF

# characters XML 1.0 can carry (no controls, surrogates, private or unassigned code points)
_XML_TEXT = st.text(st.characters(exclude_categories=("Cc", "Cs", "Co", "Cn")), min_size=1, max_size=20)


class TestRealReports:
    @pytest.mark.parametrize(
        ("file", "counts"),
        [
            ("jest-junit.xml", (6, 4, 0, 1)),
            ("pytest-failure.xml", (1, 1, 0, 0)),
            ("TEST-org.apache.maven.surefire.test.FailingTest.xml", (2, 2, 0, 0)),
            ("go-junit-report-skipped.xml", (2, 0, 0, 1)),
        ],
        ids=["jest", "pytest", "surefire-bare-testsuite", "go-skipped"],
    )
    def test_counts(self, file: str, counts: tuple[int, int, int, int]) -> None:
        summary = summarize_junit("unit", (JUNIT / file).read_bytes())
        assert (summary.tests, summary.failures, summary.errors, summary.skipped) == counts

    def test_the_first_failing_cases_are_named(self) -> None:
        summary = summarize_junit("unit", (JUNIT / "pytest-failure.xml").read_bytes())
        [case] = summary.failed
        assert (case.name, case.outcome) == ("tests.test_cli.test_merge", "failure")
        assert case.message == "NameError: name 'file' is not defined"

    def test_jest_names_are_not_doubled(self) -> None:
        summary = summarize_junit("unit", (JUNIT / "jest-junit.xml").read_bytes())
        assert [case.name for case in summary.failed][:2] == [
            "Test 1 Test 1.1 Failing test",
            "Test 1 Test 1.1 Exception in target unit",
        ]
        assert summary.failed[0].message == "Error: expect(received).toBeTruthy()"
        assert summary.passed == 1

    def test_surefire_takes_the_message_attribute(self) -> None:
        summary = summarize_junit(
            "unit", (JUNIT / "TEST-org.apache.maven.surefire.test.FailingTest.xml").read_bytes()
        )
        assert summary.failed[0].name == "org.apache.maven.surefire.test.FailingTest.defaultTestValueIs_Value"
        assert summary.failed[0].message.startswith('Expected: "wrong"')

    def test_a_summary_survives_its_json_form(self) -> None:
        summary = summarize_junit("unit", (JUNIT / "jest-junit.xml").read_bytes())
        assert TestSummary.from_json("unit", json.loads(json.dumps(summary.to_json()))) == summary


class TestDialects:
    def test_errors_and_nested_suites(self) -> None:
        content = b"""<testsuites><testsuite name="outer">
            <testsuite name="inner"><testcase name="a"><error message="boom"/></testcase></testsuite>
            <testcase name="b"/></testsuite></testsuites>"""
        summary = summarize_junit("unit", content)
        assert (summary.tests, summary.errors, summary.passed) == (2, 1, 1)
        assert summary.failed[0].outcome == "error" and summary.failed[0].message == "boom"

    def test_a_suite_without_cases_counts_from_its_attributes(self) -> None:
        summary = summarize_junit("unit", b'<testsuite tests="5" failures="1" errors="1" skipped="2"/>')
        assert (summary.tests, summary.failures, summary.errors, summary.skipped) == (5, 1, 1, 2)

    @given(
        st.lists(
            st.tuples(_XML_TEXT, st.sampled_from(["pass", "failure", "error", "skipped"])),
            max_size=40,
        )
    )
    def test_counts_match_the_cases(self, cases: list[tuple[str, str]]) -> None:
        body = "".join(
            f"<testcase name={quoteattr(name)}>"
            + ("" if outcome == "pass" else f"<{outcome}/>")
            + "</testcase>"
            for name, outcome in cases
        )
        summary = summarize_junit("unit", f"<testsuites><testsuite>{body}</testsuite></testsuites>".encode())
        outcomes = [outcome for _, outcome in cases]
        assert summary.tests == len(cases)
        assert (summary.failures, summary.errors, summary.skipped) == (
            outcomes.count("failure"),
            outcomes.count("error"),
            outcomes.count("skipped"),
        )
        assert summary.passed == outcomes.count("pass")
        assert len(summary.failed) == min(outcomes.count("failure") + outcomes.count("error"), 10)


class TestNotJunit:
    @pytest.mark.parametrize(
        ("content", "words"),
        [
            (b"", "it is empty"),
            (b"<testsuite>", "not well-formed XML (no element found at line 1"),
            (b"hello", "not well-formed XML (syntax error at line 1, column 1)"),
            (b"<html><body/></html>", "its root element is <html>, not <testsuites> or <testsuite>"),
            (b'<testsuite tests="many"/>', "has tests='many', not a number"),
        ],
        ids=["empty", "unclosed", "text", "html", "bad-count"],
    )
    def test_the_error_names_what_is_wrong(self, content: bytes, words: str) -> None:
        with pytest.raises(InvalidRequest) as caught:
            summarize_junit("unit", content)
        assert caught.value.detail.startswith("the file is not a JUnit XML report: ")
        assert words in caught.value.detail
        assert caught.value.hint

    def test_a_sarif_report_given_as_junit_says_which_flag_to_use(self) -> None:
        with pytest.raises(InvalidRequest) as caught:
            summarize_junit("unit", (SARIF / "grype-image.sarif.json").read_bytes())
        assert "it is JSON, a SARIF scan report" in caught.value.detail
        assert caught.value.hint and "--sarif" in caught.value.hint

    @pytest.mark.parametrize(
        "content",
        [
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
            b"<testsuite><testcase name='&lol2;'/></testsuite>",
            b'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<testsuite><testcase name='&x;'/></testsuite>",
            b'<!DOCTYPE testsuite SYSTEM "http://example.com/junit.dtd"><testsuite/>',
        ],
        ids=["entity-expansion", "external-entity", "external-dtd"],
    )
    def test_doctypes_and_entities_are_refused_before_expansion(self, content: bytes) -> None:
        with pytest.raises(InvalidRequest, match="declares a DOCTYPE or entities"):
            summarize_junit("unit", content)


@pytest.mark.parametrize("count", ["inf", "1e400", "NaN-ish"])
def test_a_count_that_is_not_a_finite_number_is_a_clear_error(count: str) -> None:
    content = f'<testsuite name="s" tests="{count}" failures="0"/>'.encode()  # counts only
    with pytest.raises(InvalidRequest, match="not a number"):
        summarize_junit("unit", content)
