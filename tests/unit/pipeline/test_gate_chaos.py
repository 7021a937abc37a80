"""The chaos gate's pure parts: experiments in words, the router faults they become, the combined verdict."""

from __future__ import annotations

import pytest

from conveyor.errors import NotFound
from conveyor.pipeline.gate_chaos import chaos_outcome, describe, fault_policy, with_fault
from conveyor.pipeline.outcome import GateOutcome
from conveyor.runtime.desired import EnvironmentDesired, FaultPolicy, VersionDesired
from conveyor.spec.gates import ChaosGate

GATE = ChaosGate.model_validate(
    {
        "type": "chaos",
        "experiments": [
            {"kind": "kill-instance", "count": 2},
            {"kind": "latency", "delay": "300ms", "percent": "25%"},
            {"kind": "errors", "status": 503, "percent": "50%"},
        ],
    }
)
KILL, LATENCY, ERRORS = GATE.experiments
DESIRED = EnvironmentDesired(
    "staging",
    "web",
    ("python", "app.py"),
    (
        VersionDesired("1.0.0", "sha256:" + "a" * 64, "/b/1.tar.gz", 2, 0),
        VersionDesired("1.1.0", "sha256:" + "b" * 64, "/b/2.tar.gz", 2, 10_000),
    ),
)


def test_experiments_are_described_in_words() -> None:
    assert [describe(e) for e in GATE.experiments] == [
        "kill-instance ×2",
        "latency 300ms on 25% of requests",
        "errors 503 on 50% of requests",
    ]


def test_latency_and_errors_become_router_faults_on_a_share() -> None:
    assert fault_policy(LATENCY) == FaultPolicy(latency_ms=300, latency_rate=0.25)  # type: ignore[arg-type]
    assert fault_policy(ERRORS) == FaultPolicy(error_rate=0.5, error_status=503)  # type: ignore[arg-type]


def test_a_fault_lands_on_the_version_only_and_comes_off_again() -> None:
    faulty = with_fault(DESIRED, "1.1.0", FaultPolicy(error_rate=0.5))
    assert [v.fault for v in faulty.versions] == [None, FaultPolicy(error_rate=0.5)]
    assert with_fault(faulty, "1.1.0", None) == DESIRED
    with pytest.raises(
        NotFound, match=r"version 9\.9\.9 does not run in staging \(running: 1\.0\.0, 1\.1\.0\)"
    ):
        with_fault(DESIRED, "9.9.9", FaultPolicy())


def test_older_fault_json_reads_as_every_request_delayed_and_500s() -> None:
    data = DESIRED.to_json()
    data["versions"][1]["fault"] = {"latency_ms": 30, "error_rate": 0.1, "abort_rate": 0.0}
    fault = EnvironmentDesired.from_json(data).versions[1].fault
    assert fault == FaultPolicy(latency_ms=30, error_rate=0.1, latency_rate=1.0, error_status=500)


class TestCombinedVerdict:
    def test_every_failed_experiment_is_named(self) -> None:
        results = [
            ("kill-instance ×2", GateOutcome("passed", "held", {"requests": 150})),
            ("errors 503 on 50% of requests", GateOutcome("failed", "1.1.0 during errors broke the SLOs: x")),
        ]
        outcome = chaos_outcome(results, "1.1.0", [])
        assert outcome.verdict == "failed"
        assert outcome.reason == "1 of 2 chaos experiment(s) failed: 1.1.0 during errors broke the SLOs: x"
        assert [e["verdict"] for e in outcome.evidence["experiments"]] == ["passed", "failed"]
        assert outcome.evidence["experiments"][0] == {
            "experiment": "kill-instance ×2",
            "verdict": "passed",
            "reason": "held",
            "requests": 150,
        }

    def test_experiments_left_out_after_a_runtime_failure_are_listed(self) -> None:
        results = [
            ("kill-instance ×2", GateOutcome("failed", "kill-instance ×2 could not be carried out: x"))
        ]
        outcome = chaos_outcome(results, "1.1.0", ["errors 503 on 50% of requests"])
        assert outcome.reason.endswith("(not run: errors 503 on 50% of requests)")
        assert outcome.evidence["not_run"] == ["errors 503 on 50% of requests"]

    def test_all_held_passes_listing_them(self) -> None:
        results = [(describe(e), GateOutcome("passed", "held")) for e in GATE.experiments]
        outcome = chaos_outcome(results, "1.1.0", [])
        assert outcome.verdict == "passed"
        assert outcome.reason == (
            "1.1.0 held the SLOs through 3 experiment(s): kill-instance ×2, "
            "latency 300ms on 25% of requests, errors 503 on 50% of requests"
        )
