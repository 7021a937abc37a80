"""What one rollback run measured, and the section bench.py prints and appends to benchmarks/RESULTS.md.

Pure formatting: bench.py measures and passes `Run`s, the machine's description and its options here.
The Argo Rollouts lines quote its documentation; what they imply for reaction time is derived, and
labelled so.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

ARGO_GUIDE = "https://argoproj.github.io/argo-rollouts/features/analysis/"
ARGO_GUIDE_SOURCE = (
    "https://github.com/argoproj/argo-rollouts/blob/a8a44ec7a3b8bd118030355e8c0c3fe34a8d03f1/"
    "docs/features/analysis.md"
)
ARGO_TYPES = (
    "https://github.com/argoproj/argo-rollouts/blob/002944a5a5a4e42ca8aa12b62b0645be98c92c1f/"
    "pkg/apis/rollouts/v1alpha1/analysis_types.go"
)
TARGET_S = 6.0  # one default analysis interval (5 s) + 1 s, ADR 0008
SEED_BAR_S = 300.0  # seed 000: rollback in under 5 minutes


@dataclass(frozen=True)
class Run:
    """One bad release: what the users saw and what the engine did; times in seconds."""

    scenario: str
    version: str
    state: str
    reason: str
    reaction_s: float | None  # last response from the bad version − first failed response from it
    fault_to_gone_s: float | None  # fault injected → last response from the bad version
    fault_to_state_s: float  # fault injected → promotion seen `rolled_back` (polled every 50 ms)
    fault_to_verdict_s: float | None  # fault injected → the failing analysis run (its stored time)
    verdict_to_gone_s: float | None  # failing analysis run → last response from the bad version
    analyses: int  # analysis runs from the fault to the failing one, inclusive
    evidence: str  # the new version's errors and requests in the failing run's window
    bad_requests: int  # responses from the bad version after the fault
    bad_failed: int  # of those, 5xx: failed requests users saw
    share: float | None  # bad version's share of all responses from the fault to its last response
    clean_after: bool  # every response from 0.5 s after the last bad one came from the stable version
    new_instances: int  # instances of the new version at the 10% step (the fault reaches one)


def seconds(value: float | None, width: int = 0) -> str:
    """Seconds with two decimals, or a dash."""
    return "–" if value is None else f"{value:{width}.2f}"


def show(run: Run) -> None:
    """One line per run on the terminal, as it finishes."""
    print(
        f"  {run.scenario:>4} {run.version:<7} {run.state:<11} reaction {seconds(run.reaction_s, 5)} s"
        f"  fault→gone {seconds(run.fault_to_gone_s, 5)} s"
        f"  fault→verdict {seconds(run.fault_to_verdict_s, 5)} s"
        f"  bad {run.bad_requests} (failed {run.bad_failed})  share {run.share or 0:.1%}"
        f"  evidence {run.evidence}",
        flush=True,
    )


def machine() -> dict[str, str]:
    """Where and when the benchmark ran."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "cpu": model,
        "kernel": platform.release(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "code": code_version(),
        "load_before": f"{os.getloadavg()[0]:.2f}",
    }


def code_version() -> str:
    """The commit measured, and whether src/ had uncommitted changes when the run started."""

    def git(*args: str) -> str:
        root = Path(__file__).resolve().parents[2]
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" with uncommitted changes in src/" if git("status", "--porcelain", "src") else "")


def med_max(values: list[float | None]) -> str:
    """`median / max` of the values that exist."""
    present = [v for v in values if v is not None]
    if not present:
        return "–"
    return f"{statistics.median(present):.2f} / {max(present):.2f}"


def scenario_row(name: str, runs: list[Run]) -> str:
    """One row of the summary table: a scenario's runs."""
    rolled = sum(r.state == "rolled_back" for r in runs)
    failed = [r.bad_failed for r in runs]
    bad = [r.bad_requests for r in runs]
    shares = [r.share for r in runs if r.share is not None]
    share = f"{statistics.median(shares):.1%}" if shares else "–"
    return (
        f"| {name} | {rolled}/{len(runs)} | {med_max([r.reaction_s for r in runs])}"
        f" | {med_max([r.fault_to_gone_s for r in runs])} | {med_max([r.fault_to_verdict_s for r in runs])}"
        f" | {statistics.median(bad):.0f} / {max(bad)}"
        f" | {statistics.median(failed):.0f} / {max(failed)} ({sum(failed)} in all) | {share} |"
    )


def run_row(n: int, run: Run) -> str:
    """One row of the per-run table."""
    share = "–" if run.share is None else f"{run.share:.1%}"
    return (
        f"| {n} | {run.scenario} | {run.version} | {run.state} | {seconds(run.reaction_s)}"
        f" | {seconds(run.fault_to_gone_s)} | {seconds(run.fault_to_state_s)}"
        f" | {seconds(run.fault_to_verdict_s)} | {seconds(run.verdict_to_gone_s)} | {run.analyses}"
        f" | {run.evidence} | {run.bad_requests} | {run.bad_failed} | {share} |"
    )


def argo_lines() -> list[str]:
    """Argo Rollouts' documented analysis defaults, quoted, and what typical documented settings imply."""
    return [
        "- **Argo Rollouts, as documented** (AnalysisTemplate `metrics[]` fields; API reference"
        f" [analysis_types.go]({ARGO_TYPES}); guide [Analysis & Progressive Delivery]({ARGO_GUIDE}),"
        f" quoted from its [source]({ARGO_GUIDE_SOURCE})):"
        ' `interval`: "If omitted, will perform a single measurement" (there is no default period; the'
        ' guide: "since no interval is specified, the analysis will perform a single measurement and'
        ' complete"); `count`: "If both interval and count are omitted, the effective count is 1. If only'
        ' interval is specified, metric runs indefinitely"; `failureLimit`: "the maximum number of times'
        ' the measurement is allowed to fail, before the entire metric is considered Failed (default: 0)";'
        " `inconclusiveLimit`: same wording for Inconclusive, default 0; `consecutiveErrorLimit`: errors"
        " in succession before the metric is considered Error, default 4. The guide's examples use"
        ' `interval: 5m` with `failureLimit: 3` ("If the metric is measured to be less than 95%, and there'
        ' are three such measurements, the analysis is considered Failed") and `interval: 60s` with'
        " `count: 5`.",
        "- **Derived from those numbers, not measured here** (the measurement schedule only; the metric"
        " query's own rate window, `[5m]` in the guide's PromQL, adds to it): `interval: 1m` with the"
        " default `failureLimit: 0` → the first failing measurement, 0–1 min after the fault;"
        " `interval: 1m`, `failureLimit: 1` → the second, 1–2 min; the guide's `interval: 5m`,"
        ' `failureLimit: 3` → 10–15 min by the guide\'s "three such measurements" (15–20 min if a fourth'
        ' is needed, as "allowed to fail" 3 times reads). An analysis without `interval` measures once'
        " and does not keep watching the step.",
    ]


def header(info: dict[str, str], settings: dict[str, str]) -> list[str]:
    """The bullet list that says where, how and with what the numbers were measured."""
    return [
        f"## Rollback reaction benchmark — {info['date']}",
        "",
        f"- Machine: `nproc` {info['nproc']}, {info['cpu']}, kernel {info['kernel']}.",
        f"- Software: Python {info['python']}, Conveyor at {info['code']}; server, agent, router, app"
        " instances and load generator all on this machine.",
        f"- Command: `{settings['command']}` ({settings['took']} in all).",
        f"- Load: {settings['load']}.",
        f"- Settings: {settings['settings']}.",
        f"- Each run: {settings['each']}.",
        f"- 1-minute load average before / after: {info['load_before']} / {os.getloadavg()[0]:.2f}.",
        "",
    ]


def comparison(runs: list[Run]) -> list[str]:
    """The bars side by side with the worst measured run."""
    gone = [r.fault_to_gone_s for r in runs if r.fault_to_gone_s is not None]
    reactions = [r.reaction_s for r in runs if r.reaction_s is not None]
    over = sum(r > TARGET_S for r in reactions)
    rolled = sum(r.state == "rolled_back" for r in runs)
    return [
        "| bar | limit | measured worst |",
        "|---|---|---|",
        f"| seed 000: rollback in under 5 minutes | {SEED_BAR_S:.0f} s, fault → traffic gone"
        f" | {seconds(max(gone, default=None))} s; {rolled}/{len(runs)} runs rolled back |",
        f"| Conveyor's target (ADR 0008): reaction ≤ one analysis interval + 1 s | {TARGET_S:.0f} s at the"
        f" default 5 s interval | {seconds(max(reactions, default=None))} s; {over}/{len(reactions)} runs"
        " over |",
        "| Argo Rollouts, typical documented configurations (derived, see below) | `interval: 1m`:"
        " 0–1 min (`failureLimit: 0`), 1–2 min (`failureLimit: 1`); `interval: 5m, failureLimit: 3`:"
        " 10–15 min | not run here |",
        "",
    ]


def report(runs: list[Run], info: dict[str, str], settings: dict[str, str]) -> str:
    """The section appended to RESULTS.md."""
    names = list(dict.fromkeys(r.scenario for r in runs))
    odd = [r for r in runs if r.new_instances != 1 or not r.clean_after]
    lines = [
        *header(info, settings),
        "| new version fails | rolled back | reaction s (median / max) | fault → traffic gone s"
        " (median / max) | fault → failing analysis s (median / max) | requests to the bad version"
        " after the fault (median / max) | failed requests users saw (median / max) | share of"
        " requests on the bad version |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *(scenario_row(name, [r for r in runs if r.scenario == name]) for name in names),
        "",
        "*Reaction* = time of the last response served by the bad version − time of the first failed"
        " response from it. *Fault → traffic gone* = fault injected → last response from the bad"
        " version. *Share* = the bad version's responses / all responses from the fault to its last one.",
        "",
        *comparison(runs),
        *argo_lines(),
        "",
        "Every run (times in s; *evidence* = the new version's errors and requests in the failing"
        " analysis run's window):",
        "",
        "| # | fails | version | state | reaction | fault → gone | fault → `rolled_back` seen"
        " | fault → failing analysis | failing analysis → gone | analysis runs after fault | evidence"
        " | requests to bad | failed | share |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
        *(run_row(n, run) for n, run in enumerate(runs, 1)),
        "",
        *(
            f"- Run {n}: {r.new_instances} new instance(s); only the stable version after the switch:"
            f" {r.clean_after}."
            for n, r in enumerate(runs, 1)
            if r in odd
        ),
        *([""] if odd else []),
        "Reason recorded on the promotion (first run of each scenario):",
        "",
        *(f"- {name}: `{next(r for r in runs if r.scenario == name).reason}`" for name in names),
        "",
    ]
    return "\n".join(lines)
