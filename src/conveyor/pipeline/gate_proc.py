"""Load, chaos and migration-rehearsal gates, each in a process of its own.

`python -m conveyor.pipeline.gate_proc RUN_DIR` runs one.
They run for minutes, so the engine starts them detached like command gates (gate_exec's wrapper
records pid and exit status): a restarted server re-attaches instead of starting them twice, and
cancelling a promotion stops them. The job comes from `RUN_DIR/job.json`; the verdict goes to
`RUN_DIR/outcome.json`, written atomically before the process exits.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from conveyor.credentials import write_private
from conveyor.pipeline.outcome import GateOutcome

PROCESS_GATES = frozenset({"load", "chaos", "migration-rehearsal"})
JOB = "job.json"
OUTCOME = "outcome.json"
LOGIN_VARIABLE = "CONVEYOR_MIGRATION_LOGIN"
PASSWORD_VARIABLE = "CONVEYOR_MIGRATION_PASSWORD"
"""The environment login a rehearsal migrates its clone as, and that login's password."""


def write_job(directory: Path, job: dict[str, Any]) -> None:
    """Leave the job where the gate process will read it."""
    directory.mkdir(parents=True, exist_ok=True)
    write_private(directory / JOB, json.dumps(job, sort_keys=True))  # it names database servers


def read_outcome(directory: Path) -> GateOutcome | None:
    """The verdict the gate process wrote, if it got that far."""
    try:
        data = json.loads((directory / OUTCOME).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return GateOutcome(data["verdict"], data["reason"], data.get("evidence") or {})


def run_job(job: dict[str, Any]) -> GateOutcome:
    """Run one load, chaos or migration-rehearsal gate as `job` describes it."""
    if job["kind"] == "migration-rehearsal":
        return _rehearse(job)
    from conveyor.pipeline.gate_chaos import run_chaos
    from conveyor.pipeline.gate_load import run_load_gate
    from conveyor.runtime.local.client import LocalDriver
    from conveyor.spec.gates import ChaosGate, LoadGate
    from conveyor.spec.operations import Slos

    slos = Slos.model_validate(job["slos"])
    url, version, scale = job["url"], job["version"], float(job["scale"])
    expected = job.get("expected_rps")
    if job["kind"] == "load":
        return run_load_gate(url, version, LoadGate.model_validate(job["gate"]), expected, slos, scale)
    driver = LocalDriver.for_home(Path(job["home"]))
    gate = ChaosGate.model_validate(job["gate"])
    # steady, modest traffic while things break: enough requests to judge the SLOs in a short window
    rps = 50.0
    return run_chaos(driver, job["environment"], version, url, gate, slos, scale, rps=rps)


def _rehearse(job: dict[str, Any]) -> GateOutcome:
    from conveyor.migrations.rehearsal import rehearse
    from conveyor.migrations.service import bundle_migrations

    migrations = bundle_migrations(
        Path(job["home"]), job["digest"], job["directory"], job.get("format", "sql")
    )
    login = os.environ.get(LOGIN_VARIABLE)
    return rehearse(
        job["server"],
        job["database"],
        job["owner"],
        migrations,
        login=(login, os.environ.get(PASSWORD_VARIABLE, "")) if login else None,
        service=job["service"],
        release=job["release"],
        lock_timeout_ms=int(job["lock_timeout_ms"]),
        statement_timeout_ms=int(job["statement_timeout_ms"]),
        test_rollback=bool(job["gate"]["test_rollback"]),
        integrity=job["gate"]["integrity"],
    )


def main(argv: list[str]) -> int:
    """Entry point; the exit status is 0 whenever a verdict was written."""
    directory = Path(argv[1])
    job = json.loads((directory / JOB).read_text())
    try:
        outcome = run_job(job)
    except Exception as exc:  # the verdict must say what broke, not leave the gate "lost"
        outcome = GateOutcome("failed", f"the {job['kind']} gate could not run: {type(exc).__name__}: {exc}")
    data = {"verdict": outcome.verdict, "reason": outcome.reason, "evidence": outcome.evidence}
    temporary = directory / (OUTCOME + ".tmp")
    temporary.write_text(json.dumps(data, sort_keys=True, default=str))
    os.replace(temporary, directory / OUTCOME)
    print(outcome.reason)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
