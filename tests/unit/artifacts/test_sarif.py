"""SARIF 2.1.0 reports: real scanner output, severity normalization and clear refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.artifacts.sarif import (
    SEVERITIES,
    SEVERITY_RANK,
    ScanSummary,
    cvss_severity,
    findings,
    severity_of,
    summarize_sarif,
)
from conveyor.errors import InvalidRequest
from tests.unit.artifacts.fixtures import JUNIT, SARIF


def _log(results: list[dict[str, Any]], rules: list[dict[str, Any]] | None = None) -> bytes:
    run = {"tool": {"driver": {"name": "scanner", "rules": rules or []}}, "results": results}
    return json.dumps({"version": "2.1.0", "runs": [run]}).encode()


def _result(rule: str = "R1", **extra: Any) -> dict[str, Any]:
    return {"ruleId": rule, "message": {"text": f"{rule} found"}, **extra}


class TestRealReports:
    def test_trivy_severity_comes_from_level_and_tags(self) -> None:
        summary = summarize_sarif("dependencies", (SARIF / "trivy-alpine-310.sarif.json").read_bytes())
        assert summary.tools == ("Trivy",)
        assert dict(summary.counts) == {"critical": 0, "high": 0, "medium": 6, "low": 2, "none": 0}
        assert summary.total == 8 and summary.at_or_above("medium") == 6
        worst = summary.worst[0]
        assert (worst.rule_id, worst.severity) == ("CVE-2019-1549", "medium")
        assert worst.location == "testdata/fixtures/images/alpine-310.tar.gz:1"
        assert worst.message == "Package: libcrypto1.1"

    def test_grype_severity_comes_only_from_the_cvss_score(self) -> None:
        # the fixture's rule described as "critical" stores security-severity 1.0: the number decides
        found = {f.rule_id: f.severity for f in findings((SARIF / "grype-image.sarif.json").read_bytes())}
        assert found == {"CVE-1999-0001-package-1": "medium", "CVE-1999-0002-package-2": "low"}

    def test_an_empty_codeql_run_has_no_findings(self) -> None:
        summary = summarize_sarif("sast", (SARIF / "codeql-action-empty.sarif").read_bytes())
        assert summary.tools == ("LGTM.com",)
        assert summary.total == 0 and summary.worst == ()

    def test_a_summary_survives_its_json_form(self) -> None:
        summary = summarize_sarif("dependencies", (SARIF / "trivy-alpine-310.sarif.json").read_bytes())
        again = ScanSummary.from_json("dependencies", json.loads(json.dumps(summary.to_json())))
        assert again == summary


class TestSeverity:
    @pytest.mark.parametrize(
        ("score", "severity"),
        [
            (10, "critical"),
            ("9.0", "critical"),
            (8.9, "high"),
            ("7.0", "high"),
            (6.9, "medium"),
            ("4.0", "medium"),
            (3.9, "low"),
            ("0.1", "low"),
            (0, "none"),
            ("n/a", None),
            (11, None),
            (True, None),
        ],
    )
    def test_cvss_bands(self, score: Any, severity: str | None) -> None:
        assert cvss_severity(score) == severity

    @pytest.mark.parametrize(
        ("result", "rule", "severity"),
        [
            (_result(level="error"), {}, "high"),
            (_result(level="warning"), {}, "medium"),
            (_result(level="note"), {}, "low"),
            (_result(level="none"), {}, "none"),
            (_result(), {"defaultConfiguration": {"level": "error"}}, "high"),
            (_result(), {}, "medium"),
            (_result(level="note"), {"properties": {"security-severity": "9.8"}}, "critical"),
            (
                _result(properties={"security-severity": "2"}),
                {"properties": {"security-severity": "9.8"}},
                "low",
            ),
            (_result(level="note"), {"properties": {"tags": ["security", "HIGH"]}}, "high"),
            (_result(level="note"), {"properties": {"problem.severity": "error"}}, "high"),
            (_result(properties={"severity": "critical"}), {}, "critical"),
        ],
        ids=[
            "error-level",
            "warning-level",
            "note-level",
            "none-level",
            "rule-default-level",
            "sarif-default-warning",
            "rule-cvss-beats-level",
            "result-cvss-beats-rule-cvss",
            "rule-tag",
            "codeql-problem-severity",
            "result-severity-word",
        ],
    )
    def test_where_severity_comes_from(
        self, result: dict[str, Any], rule: dict[str, Any], severity: str
    ) -> None:
        assert severity_of(result, rule) == severity

    @given(st.floats(0, 10, allow_nan=False), st.floats(0, 10, allow_nan=False))
    def test_a_higher_score_is_never_a_lower_severity(self, a: float, b: float) -> None:
        low, high = sorted((a, b))
        assert SEVERITY_RANK[cvss_severity(low) or "none"] <= SEVERITY_RANK[cvss_severity(high) or "none"]

    @given(
        st.dictionaries(
            st.sampled_from(["level", "properties", "kind", "ruleId"]),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                lambda inner: (
                    st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
                ),
                max_leaves=6,
            ),
        )
    )
    def test_any_result_gets_a_known_severity(self, result: dict[str, Any]) -> None:
        assert severity_of(result, {}) in SEVERITIES


class TestCounting:
    def test_suppressed_and_passing_results_are_not_findings(self) -> None:
        content = _log(
            [
                _result("A", level="error"),
                _result("B", level="error", suppressions=[{"kind": "inSource"}]),
                _result("C", level="error", suppressions=[{"kind": "external", "status": "rejected"}]),
                _result("D", kind="pass"),
            ]
        )
        summary = summarize_sarif("sast", content)
        assert summary.counts["high"] == 2 and summary.suppressed == 1
        assert [f.rule_id for f in summary.worst] == ["A", "C"]

    def test_a_result_finds_its_rule_by_index_or_id(self) -> None:
        rules = [{"id": "X", "properties": {"security-severity": "9.1"}}, {"id": "Y"}]
        content = _log([{"ruleIndex": 0, "message": {"text": "by index"}}, _result("X")], rules)
        assert [f.severity for f in findings(content)] == ["critical", "critical"]
        assert findings(content)[0].rule_id == "X"

    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["error", "warning", "note", "none"]),
                st.sampled_from(["fail", "pass", "informational"]),
                st.booleans(),
            ),
            max_size=30,
        )
    )
    def test_counts_add_up(self, specs: list[tuple[str, str, bool]]) -> None:
        results = [
            _result(
                f"R{i}",
                level=level,
                kind=kind,
                **({"suppressions": [{"kind": "inSource"}]} if hidden else {}),
            )
            for i, (level, kind, hidden) in enumerate(specs)
        ]
        summary = summarize_sarif("sast", _log(results))
        failing = [(level, hidden) for level, kind, hidden in specs if kind == "fail"]
        assert summary.suppressed == sum(hidden for _, hidden in failing)
        assert summary.total == sum(not hidden for _, hidden in failing)
        assert summary.at_or_above("critical") == 0
        ranks = [SEVERITY_RANK[f.severity] for f in summary.worst]
        assert ranks == sorted(ranks, reverse=True) and len(summary.worst) <= 10


class TestNotSarif:
    @pytest.mark.parametrize(
        ("content", "words", "hint"),
        [
            (b"", "it is empty", "SARIF 2.1.0 file"),
            (b"not json at all", "it is not JSON (line 1, column 1)", "SARIF 2.1.0 file"),
            (b"[1, 2]", "it is a JSON list", "SARIF 2.1.0 file"),
            (b'{"version": "2.1.0"}', "it has no `runs`", "SARIF 2.1.0 file"),
            (b'{"version": "2.0.0", "runs": []}', "its version is '2.0.0', not 2.1.0", "write it"),
            (b'{"runs": []}', "its version is missing, not 2.1.0", "write it"),
            (b'{"version": "2.1.0", "runs": {}}', "`runs` is not a list", "SARIF 2.1.0 file"),
            (b"\xff\xfe\x00", "not UTF-8", "SARIF 2.1.0 file"),
        ],
        ids=["empty", "text", "json-list", "no-runs", "old-version", "no-version", "runs-object", "binary"],
    )
    def test_the_error_names_what_is_wrong(self, content: bytes, words: str, hint: str) -> None:
        with pytest.raises(InvalidRequest) as caught:
            summarize_sarif("sast", content)
        assert caught.value.detail.startswith("the file is not a SARIF 2.1.0 report: ")
        assert words in caught.value.detail
        assert caught.value.hint and hint in caught.value.hint

    def test_a_junit_report_given_as_sarif_says_which_flag_to_use(self) -> None:
        with pytest.raises(InvalidRequest) as caught:
            summarize_sarif("sast", (JUNIT / "pytest-failure.xml").read_bytes())
        assert "it is XML, a JUnit test report" in caught.value.detail
        assert caught.value.hint and "--junit" in caught.value.hint

    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(
                    st.sampled_from(
                        ["version", "runs", "tool", "driver", "rules", "results", "level", "ruleId"]
                    )
                    | st.text(max_size=6),
                    inner,
                    max_size=4,
                )
            ),
            max_leaves=20,
        )
    )
    def test_any_json_is_summarized_or_refused_cleanly(self, data: Any) -> None:
        if isinstance(data, dict):
            data = {**data, "version": "2.1.0"}
        try:
            summary = summarize_sarif("sast", json.dumps(data).encode())
        except InvalidRequest:
            return
        assert summary.total == sum(summary.counts.values())


@pytest.mark.parametrize(
    "content",
    [
        b'{"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x", "rules": 5}}, "results": []}]}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["rules-not-a-list", "nested-too-deep"],
)
def test_odd_shapes_are_a_clear_error_or_a_summary_never_a_crash(content: bytes) -> None:
    try:
        summarize_sarif("odd", content)
    except InvalidRequest as exc:
        assert "SARIF" in exc.detail or "JSON" in exc.detail
