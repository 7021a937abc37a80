"""The chaos gate: break the new version on purpose under steady load and judge the SLOs; the engine calls it.

Experiments run one after another, each for the gate's (scaled) duration while gate_load's open-loop
generator sends a modest steady rate pinned to the new version:

- kill-instance SIGKILLs ready instances of the version through the runtime driver a quarter of the
  way into the window, then waits for the runtime to replace them;
- latency and errors make the router inject the fault for the version (a `FaultPolicy` in a copy of
  the environment's desired state) and always take it away again, whatever happens meanwhile.

An experiment that breaks the SLOs fails the gate and the next one still runs; one the runtime cannot
carry out (the agent is gone, too few instances) ends the gate there.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, replace
from typing import Any

from conveyor.errors import Conflict, ConveyorError, NotFound
from conveyor.pipeline.gate_load import LoadRun, Step, drive, judge_load
from conveyor.pipeline.outcome import GateOutcome
from conveyor.pipeline.slo_check import MIN_REQUESTS
from conveyor.runtime.desired import EnvironmentDesired, FaultPolicy
from conveyor.runtime.driver import RuntimeDriver
from conveyor.spec.gates import ChaosGate, InjectErrors, InjectLatency, KillInstance
from conveyor.spec.operations import Slos

CHAOS_RPS = 50.0
"""Steady load during experiments: enough requests to judge, little enough to blame the fault."""
RECOVERY_SECONDS = 60.0
"""How long killed instances may take to be ready again before the experiment fails."""
KILL_AFTER = 0.25
"""Share of the window served undisturbed before instances are killed."""

Experiment = KillInstance | InjectLatency | InjectErrors


@dataclass(frozen=True)
class Target:
    """What every experiment acts on: a version in an environment, its runtime and its router."""

    driver: RuntimeDriver
    environment: str
    version: str
    url: str
    path: str = "/"


def run_chaos(
    driver: RuntimeDriver,
    environment: str,
    version: str,
    url: str,
    gate: ChaosGate,
    slos: Slos,
    scale: float = 1.0,
    *,
    rps: float = CHAOS_RPS,
    min_requests: int = MIN_REQUESTS,
    path: str = "/",
    recovery_seconds: float = RECOVERY_SECONDS,
) -> GateOutcome:
    """Run the gate's experiments in order against `version` (blocks meanwhile); fails naming each breach."""
    target = Target(driver, environment, version, url, path)
    schedule: list[Step] = [(float(s), rps) for s in range(max(1, round(gate.duration.seconds * scale)))]
    results: list[tuple[str, GateOutcome]] = []
    for experiment in gate.experiments:
        label = describe(experiment)
        try:
            run, notes = asyncio.run(_under_load(target, experiment, schedule, recovery_seconds))
        except ConveyorError as exc:
            results.append((label, _not_carried_out(label, exc)))
            break
        results.append((label, _judge(run, notes, slos, f"{version} during {label}", min_requests)))
    not_run = [describe(e) for e in gate.experiments[len(results) :]]
    return chaos_outcome(results, version, not_run)


def describe(experiment: Experiment) -> str:
    """An experiment in a few words: "kill-instance ×2", "errors 503 on 50% of requests"."""
    if isinstance(experiment, KillInstance):
        return f"kill-instance ×{experiment.count}"
    if isinstance(experiment, InjectLatency):
        return f"latency {experiment.delay} on {experiment.percent} of requests"
    return f"errors {experiment.status} on {experiment.percent} of requests"


def fault_policy(experiment: InjectLatency | InjectErrors) -> FaultPolicy:
    """The router fault that carries out a latency or errors experiment."""
    if isinstance(experiment, InjectLatency):
        return FaultPolicy(latency_ms=experiment.delay.milliseconds, latency_rate=experiment.percent.fraction)
    return FaultPolicy(error_rate=experiment.percent.fraction, error_status=experiment.status)


def with_fault(desired: EnvironmentDesired, version: str, fault: FaultPolicy | None) -> EnvironmentDesired:
    """A copy of `desired` with `fault` on `version` (None: no fault); NotFound when it does not run."""
    if version not in {v.version for v in desired.versions}:
        running = ", ".join(v.version for v in desired.versions) or "nothing"
        raise NotFound(f"version {version} does not run in {desired.environment} (running: {running})")
    versions = tuple(replace(v, fault=fault) if v.version == version else v for v in desired.versions)
    return replace(desired, versions=versions)


def chaos_outcome(results: list[tuple[str, GateOutcome]], version: str, not_run: list[str]) -> GateOutcome:
    """One verdict from the experiments' verdicts: failed when any failed, naming each."""
    evidence: dict[str, Any] = {
        "experiments": [{"experiment": label, **_as_json(o)} for label, o in results],
    }
    if not_run:
        evidence["not_run"] = not_run
    failed = [o.reason for _, o in results if not o.passed]
    if failed:
        total = len(results) + len(not_run)
        reason = f"{len(failed)} of {total} chaos experiment(s) failed: {'; '.join(failed)}"
        if not_run:
            reason += f" (not run: {', '.join(not_run)})"
        return GateOutcome("failed", reason, evidence)
    labels = ", ".join(label for label, _ in results)
    return GateOutcome(
        "passed", f"{version} held the SLOs through {len(results)} experiment(s): {labels}", evidence
    )


def _as_json(outcome: GateOutcome) -> dict[str, Any]:
    """An experiment's verdict, reason and evidence as one JSON-ready mapping."""
    return {"verdict": outcome.verdict, "reason": outcome.reason, **outcome.evidence}


def _not_carried_out(label: str, exc: ConveyorError) -> GateOutcome:
    """An experiment the runtime could not carry out, with the fix when the error names one."""
    fix = f"; {exc.hint}" if exc.hint else ""
    return GateOutcome(
        "failed", f"{label} could not be carried out: {exc.detail}{fix}", {"error": exc.detail}
    )


def _judge(run: LoadRun, notes: dict[str, Any], slos: Slos, what: str, min_requests: int) -> GateOutcome:
    """The experiment's window against the SLOs; killed instances that never came back fail it too."""
    outcome = judge_load(run, slos, what, min_requests=min_requests)
    evidence = {**outcome.evidence, **notes}
    if "recovered_after_s" in notes and notes["recovered_after_s"] is None:
        late = f"the killed instance(s) were not ready again within {notes['recovery_limit_s']:g} s"
        reason = f"{what}: {late}" if outcome.passed else f"{outcome.reason}; {late}"
        return GateOutcome("failed", reason, evidence)
    return replace(outcome, evidence=evidence)


async def _under_load(
    target: Target, experiment: Experiment, schedule: list[Step], recovery_seconds: float
) -> tuple[LoadRun, dict[str, Any]]:
    if isinstance(experiment, KillInstance):
        return await _kill_under_load(target, experiment.count, schedule, recovery_seconds)
    return await _fault_under_load(target, fault_policy(experiment), schedule)


async def _kill_under_load(
    target: Target, count: int, schedule: list[Step], recovery_seconds: float
) -> tuple[LoadRun, dict[str, Any]]:
    ready = _ready(await asyncio.to_thread(target.driver.observe, target.environment), target.version)
    if len(ready) < count:
        raise Conflict(
            f"only {len(ready)} ready instance(s) of {target.version} in {target.environment}; "
            f"the experiment kills {count}",
            hint="run more instances or lower the experiment's count",
        )
    victims = {i["key"]: i["pid"] for i in ready[:count]}
    load = asyncio.create_task(drive(target.url, target.version, schedule, path=target.path))
    try:
        await asyncio.sleep(len(schedule) * KILL_AFTER)
        for key in victims:
            await asyncio.to_thread(target.driver.kill_instance, target.environment, key)
        killed_at = asyncio.get_running_loop().time()
        watch = asyncio.create_task(_recovery(target, victims, killed_at, recovery_seconds))
    finally:
        run = await load  # a failed kill still lets the load finish before the error goes up
    recovered = await watch
    notes = {
        "killed": [{"instance": k, "pid": p} for k, p in victims.items()],
        "recovered_after_s": recovered,
    }
    return run, {**notes, "recovery_limit_s": recovery_seconds}


async def _recovery(target: Target, victims: dict[str, int], since: float, limit: float) -> float | None:
    """Seconds from the kill until every victim is ready again with a new process; None after `limit`."""
    loop = asyncio.get_running_loop()
    while True:
        observed = await asyncio.to_thread(target.driver.observe, target.environment)
        back = {i["key"] for i in _ready(observed, target.version) if i["pid"] != victims.get(i["key"])}
        if set(victims) <= back:
            return round(loop.time() - since, 2)
        if loop.time() - since > limit:
            return None
        await asyncio.sleep(0.2)


def _ready(observed: dict[str, Any], version: str) -> list[dict[str, Any]]:
    instances = observed.get("instances") or []
    return [i for i in instances if i["version"] == version and i["state"] == "ready" and i.get("pid")]


async def _fault_under_load(
    target: Target, fault: FaultPolicy, schedule: list[Step]
) -> tuple[LoadRun, dict[str, Any]]:
    before = await asyncio.to_thread(_set_fault, target, fault)
    try:
        run = await drive(target.url, target.version, schedule, path=target.path)
    finally:
        await asyncio.to_thread(_restore, target, before)
    return run, {"fault": asdict(fault)}


def _set_fault(target: Target, fault: FaultPolicy | None) -> FaultPolicy | None:
    """Put `fault` on the version in the runtime's current desired state; returns the fault it had."""
    desired = EnvironmentDesired.from_json(target.driver.observe(target.environment)["desired"])
    changed = with_fault(desired, target.version, fault)
    target.driver.apply(changed)
    return next(v.fault for v in desired.versions if v.version == target.version)


def _restore(target: Target, before: FaultPolicy | None) -> None:
    """Take the injected fault away again (the version's earlier fault, usually none, comes back)."""
    try:
        _set_fault(target, before)
    except NotFound:
        return  # the version no longer runs (rolled back meanwhile): no fault left to take away
    except ConveyorError as exc:
        env, version = target.environment, target.version
        raise ConveyorError(
            f"the fault injected into {version} in {env} could not be taken away: {exc.detail}",
            hint=f"clear it with `conveyor fault {env} {version} --clear`",
        ) from None
