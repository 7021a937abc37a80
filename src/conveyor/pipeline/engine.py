"""The promotion engine: claim due promotions with a lease, decide purely, carry out effects idempotently.

Every server process runs one `Engine` thread. A step is a few short transactions: claim the
lease; collect what running gates reported; decide; record the effect of this step under
(promotion, step token) before carrying it out; persist the new state and give the lease back.
No transaction stays open while a gate runs or the runtime works. A worker killed at any point
leaves a row whose lease expires, and the next worker resumes from the last persisted step.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import sys
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from conveyor.artifacts.service import blob_path, get_artifact
from conveyor.audit.log import AuditContext
from conveyor.audit.log import record as audit
from conveyor.backups import service as backups
from conveyor.clock import Clock, isoformat
from conveyor.config.service import release_config
from conveyor.deployments import service as deployments
from conveyor.deployments.desired import config_sha256, recreate
from conveyor.environments.service import applied_spec, lock_environment
from conveyor.errors import ConveyorError, InvalidRequest, NotFound
from conveyor.migrations import service as migrations
from conveyor.migrations.runner import ChecksumChanged
from conveyor.pipeline import gate_eval, gate_exec, gate_proc, records
from conveyor.pipeline import service as promotions
from conveyor.pipeline.decide import HOLDING_STATES, TERMINAL_STATES, Decision, Readiness, decide
from conveyor.pipeline.observe import gate_plans, observe
from conveyor.pipeline.outcome import GateOutcome
from conveyor.resources import service as resources
from conveyor.rollout import reconcile
from conveyor.rollout import records as rollouts
from conveyor.rollout.analysis import Verdict
from conveyor.rollout.policy import time_scale
from conveyor.runtime.desired import EnvironmentDesired
from conveyor.runtime.driver import RuntimeDriver
from conveyor.secrets.crypto import Keyring
from conveyor.secrets.keys import load_keyring
from conveyor.spec import Spec
from conveyor.store.db import Store
from conveyor.store.tables import Deployment, GateRun, Promotion

log = logging.getLogger("conveyor.engine")

ENGINE = AuditContext(actor="conveyor")
RETRY_AFTER_ERROR = timedelta(seconds=5)
# restarts without becoming ready after which a new version counts as crashing
CRASH_RESTARTS = 3


def _seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass
class EngineSettings:
    """How often to look for work and how long a claimed promotion stays ours without renewal."""

    tick: float = field(default_factory=lambda: _seconds("CONVEYOR_ENGINE_TICK", 0.5))
    poll: float = field(default_factory=lambda: _seconds("CONVEYOR_ENGINE_POLL", 1.0))
    """How soon to look again at a running gate or a starting deployment."""
    lease: float = field(default_factory=lambda: _seconds("CONVEYOR_ENGINE_LEASE", 15.0))
    backups: float = field(default_factory=lambda: _seconds("CONVEYOR_ENGINE_BACKUP_CHECK", 10.0))
    """How often to look for scheduled backups that are due and backups that have expired."""


class Engine:
    """Advances promotions; several engines (one per server) share the work through leases."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        driver: RuntimeDriver,
        home: Path,
        settings: EngineSettings | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.driver = driver
        self.home = home
        self._keyring = keyring
        self.settings = settings or EngineSettings()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._logins_checked_at: datetime | None = None
        self._backups_checked_at: datetime | None = None
        self._backup_thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def keyring(self) -> Keyring:
        """The master keys (the server's, else read from the home): migrations open the login's password."""
        if self._keyring is None:
            self._keyring = load_keyring(self.home)
        return self._keyring

    # -- the loop ---------------------------------------------------------------------------

    def start(self) -> None:
        """Run the loop in a daemon thread."""
        self._thread = threading.Thread(target=self._loop, name="conveyor-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the loop to end and wait for the current step to finish."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def wake(self) -> None:
        """Look for work now (a request or a review just arrived)."""
        self._wake.set()

    def _loop(self) -> None:
        log.info("engine %s started", self.owner)
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the loop must outlive a store outage or a bug in one step
                log.exception("engine tick failed")
            self._wake.wait(self.settings.tick)
            self._wake.clear()

    def run_once(self) -> int:
        """Step every due promotion this worker can claim; returns how many it stepped."""
        with self.store.read() as session:
            ids = records.due(session, self.clock.now())
        stepped = 0
        for promotion_id in ids:
            if self._stop.is_set():
                break
            if self.step(promotion_id):
                stepped += 1
        self._retire_due()
        self._retire_logins()
        self._schedule_backups()
        return stepped

    # -- one step ---------------------------------------------------------------------------

    def _lease_until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.settings.lease)

    def step(self, promotion_id: int) -> bool:
        """Advance one promotion if its lease can be taken; False when another worker has it."""
        now = self.clock.now()
        with self.store.write() as session:
            if not records.claim(session, promotion_id, self.owner, now, self._lease_until(now)):
                return False
        try:
            self._advance(promotion_id)
        except _Handled:
            pass
        except Exception as exc:
            log.exception("promotion %s: step failed", promotion_id)
            self._retry_later(promotion_id, exc)
        return True

    def _retry_later(self, promotion_id: int, exc: Exception) -> None:
        """A temporary error keeps the state and retries; a permanent one (bad input) fails the promotion."""
        why = exc.detail if isinstance(exc, ConveyorError) else f"{type(exc).__name__}: {exc}"
        now = self.clock.now()
        kill: list[int] = []
        with self.store.write() as session:
            row = self._locked(session, promotion_id)
            if row is None or not records.holds_lease(row, self.owner, now):
                return
            if isinstance(exc, InvalidRequest | NotFound) and row.state not in HOLDING_STATES:
                kill = self._persist_in(session, row, Decision("failed", f"cannot go on: {why}"), now)
            else:
                row.reason = f"retrying after an error: {why}"
                row.next_run_at = isoformat(now + RETRY_AFTER_ERROR)
                records.release_lease(row)
        self._kill(kill)

    def _locked(self, session: Session, promotion_id: int) -> Promotion | None:
        """The promotion row, locked against concurrent API writes (cancel, review) until commit."""
        return session.get(Promotion, promotion_id, with_for_update=True)

    def _renew(self, session: Session, row: Promotion) -> bool:
        now = self.clock.now()
        if not records.holds_lease(row, self.owner, now):
            log.warning("promotion %s: lease lost; another worker continues it", row.id)
            return False
        row.lease_expires_at = isoformat(self._lease_until(now))
        return True

    def _advance(self, promotion_id: int) -> None:
        self._collect(promotion_id)
        self._reapply(promotion_id)
        readiness = self._readiness(promotion_id)
        verdict = self._measure(promotion_id)
        kill: list[int] = []
        with self.store.write() as session:
            row = self._locked(session, promotion_id)
            if row is None or not self._renew(session, row):
                return
            if row.state not in HOLDING_STATES:
                # decisions that may deploy into one environment take turns (a row lock on PostgreSQL;
                # SQLite's write lock already serialises them)
                lock_environment(session, row.environment)
            spec = self._spec(session, row, kill)
            step = self._decide_in(session, row, spec, readiness, verdict, kill) if spec is not None else None
        self._kill(kill)
        if step is None:
            return
        decision, started, planned, traffic = step
        if started:
            self._run_gates(promotion_id, started)
            self._release(promotion_id)  # look again at once: the outcomes are in
        elif planned is not None:
            self._apply(promotion_id, planned, decision if decision.roll_back else None)
        elif traffic is not None:
            self._apply_traffic(promotion_id, traffic)
        self.wake()

    def _decide_in(
        self,
        session: Session,
        row: Promotion,
        spec: Spec,
        readiness: Readiness | None,
        verdict: Verdict | None,
        kill: list[int],
    ) -> tuple[Decision, list[int], deployments.PlannedDeployment | None, EnvironmentDesired | None]:
        """Decide and record this step: gates to run, a deployment or weights to apply, or the new state."""
        now = self.clock.now()
        poll = timedelta(seconds=self.settings.poll)
        decision = decide(observe(session, row, spec, now, readiness, verdict, poll))
        started = self._begin_gates(session, row, spec, decision)
        traffic = reconcile.record_action(session, ENGINE, row, decision, verdict, now)
        planned = None
        if decision.deploy:
            decision, planned = self._record_deploy(session, row, spec, decision, now)
        elif decision.roll_back:
            planned = self._record_rollback(session, row, now)
            if planned is None:
                decision = Decision("failed", decision.reason, decision.checks)
        if planned is None:
            kill += self._persist_in(session, row, decision, now, keep_lease=bool(started))
        return decision, started, planned, traffic

    def _spec(self, session: Session, row: Promotion, kill: list[int]) -> Spec | None:
        """The applied spec; None (and the promotion cancelled) when its environment or service is gone."""
        spec = deployments.current_spec(session)
        if row.environment not in spec.environments or row.service not in spec.services:
            gone = row.environment if row.environment not in spec.environments else row.service
            why = f"'{gone}' was removed from conveyor.yaml"
            kill += self._persist_in(session, row, Decision("cancelled", why), self.clock.now())
            return None
        return spec

    def _release(self, promotion_id: int) -> None:
        with self.store.write() as session:
            row = self._locked(session, promotion_id)
            if row is not None and row.lease_owner == self.owner:
                row.next_run_at = isoformat(self.clock.now())
                records.release_lease(row)

    def _persist_in(
        self, session: Session, row: Promotion, decision: Decision, now: datetime, keep_lease: bool = False
    ) -> list[int]:
        """Write the decision with its transition and audit event; give the lease back unless told not to.

        Returns the command gate runs to stop once the transaction has committed.
        """
        kill: list[int] = []
        if decision.state in TERMINAL_STATES:
            kill = records.stop_open_runs(session, row, decision.state, now)
        records.transition(session, ENGINE, row, decision, now)
        if decision.state == "succeeded":
            for started in promotions.follow_success(session, ENGINE, row, now):
                log.info("promotion %s: %s", row.id, started)
        if not keep_lease:
            records.release_lease(row)
        return kill

    def _kill(self, run_ids: list[int]) -> None:
        """Stop command gates, after the transaction that recorded why has committed."""
        gate_exec.stop_runs(self.home, run_ids)

    # -- gates ------------------------------------------------------------------------------

    def _collect(self, promotion_id: int) -> None:
        """Record what running gates reported; a run nobody is carrying out any more is lost."""
        now = self.clock.now()
        kill: list[int] = []
        with self.store.write() as session:
            row = self._locked(session, promotion_id)
            if row is None or not records.holds_lease(row, self.owner, now):
                return
            spec = deployments.current_spec(session)
            gates = (
                {g.name: g for g in spec.environments[row.environment].promotion.gates}
                if row.environment in spec.environments
                else {}
            )
            for run in records.latest_runs(session, row.id).values():
                if run.state != "running":
                    continue
                gate = gates.get(run.name)
                if gate is not None and gate.type in ("command", *gate_proc.PROCESS_GATES):
                    directory = gate_exec.run_dir(self.home, run.id)
                    status = gate_exec.collect_command(
                        directory,
                        gate.run if gate.type == "command" else f"{gate.type} gate",
                        records.parse_time(run.started_at) or now,
                        timedelta(seconds=gate.timeout.seconds),
                        now,
                    )
                    if status.outcome is not None and gate.type != "command" and not status.timed_out:
                        # the gate process wrote its verdict before exiting; without one it broke
                        status = gate_exec.CommandStatus(gate_proc.read_outcome(directory) or status.outcome)
                    if status.outcome is not None:
                        self._finish_run(run, status.outcome, now)
                        if status.timed_out:
                            kill.append(run.id)
                    elif status.lost:
                        self._lose(run, now, "its process ended without reporting an exit status")
                else:
                    # inline gates run inside a step; we hold the lease, so whoever ran it is gone
                    self._lose(run, now, "the worker running it stopped before it finished")
        self._kill(kill)

    def _lose(self, run: GateRun, now: datetime, why: str) -> None:
        run.state = "lost"
        run.finished_at = isoformat(now)
        run.reason = f"interrupted: {why}; it runs again"

    def _finish_run(self, run: GateRun, outcome: GateOutcome, now: datetime) -> None:
        evidence = dict(outcome.evidence)
        if outcome.retry_at is not None:
            evidence["retry_at"] = outcome.retry_at.isoformat()
        run.state = outcome.verdict
        run.reason = outcome.reason
        run.evidence = json.dumps(evidence, sort_keys=True, default=str)
        if outcome.verdict != "waiting":
            run.finished_at = isoformat(now)

    def _begin_gates(self, session: Session, row: Promotion, spec: Spec, decision: Decision) -> list[int]:
        """Create or judge the runs `decision` asks for; returns those to run outside the transaction."""
        if not decision.run_gates:
            return []
        now = self.clock.now()
        gates = {g.name: g for g in spec.environments[row.environment].promotion.gates}
        plans = {p.name: p for p in gate_plans(spec, row.environment)}
        latest = records.latest_runs(session, row.id)
        later: list[int] = []
        for name in decision.run_gates:
            gate = gates.get(name)  # None for the implicit signature gate
            kind = plans[name].type
            run = latest.get(name)
            if run is None or run.state in ("lost", "stopped", "failed", "passed"):
                run = GateRun(
                    promotion_id=row.id,
                    name=name,
                    type=kind,
                    phase=plans[name].phase,
                    attempt=(run.attempt if run else 0) + 1,
                    state="running",
                    started_at=isoformat(now),
                    reason="",
                    evidence="{}",
                    owner=self.owner,
                )
                session.add(run)
            elif run.state == "pending":
                run.state, run.started_at, run.owner = "running", isoformat(now), self.owner
            session.flush()
            if gate_eval.is_inline(kind):
                started = records.parse_time(run.started_at) or now
                outcome = gate_eval.evaluate(session, row, spec, kind, gate, started, now)
                self._finish_run(run, outcome, now)
                if run.state == "waiting":
                    run.owner = self.owner
            else:
                later.append(run.id)
        return later

    def _run_gates(self, promotion_id: int, run_ids: list[int]) -> None:
        """Start command gates (detached) and run smoke checks, outside any transaction."""
        with self.store.read() as session:
            row = session.get(Promotion, promotion_id)
            assert row is not None
            spec = deployments.current_spec(session)
            runs = [session.get(GateRun, rid) for rid in run_ids]
        gates = {g.name: g for g in spec.environments[row.environment].promotion.gates}
        results: dict[int, GateOutcome | None] = {}
        for run in runs:
            assert run is not None
            gate = gates[run.name]
            if gate.type == "command":
                env = gate_exec.gate_environment(self._gate_variables(row, run))
                gate_exec.start_command(gate_exec.run_dir(self.home, run.id), gate.run, self.home.parent, env)
                results[run.id] = None
            elif gate.type in gate_proc.PROCESS_GATES:
                results[run.id] = self._start_process_gate(row, spec, gate, run)
            elif gate.type == "smoke":
                results[run.id] = self._smoke(row, spec, gate)
            else:
                results[run.id] = gate_eval.unsupported(gate.type)
        now = self.clock.now()
        orphans: list[int] = []
        with self.store.write() as session:
            for run_id, outcome in results.items():
                run = session.get(GateRun, run_id)
                if run is None:
                    continue
                if outcome is None:
                    run.pid = gate_exec.recorded_pid(gate_exec.run_dir(self.home, run_id))
                    if run.state != "running":  # the promotion was cancelled while the command started
                        orphans.append(run_id)
                elif run.state == "running":
                    self._finish_run(run, outcome, now)
        self._kill(orphans)

    def _start_process_gate(self, row: Promotion, spec: Spec, gate: Any, run: GateRun) -> GateOutcome | None:
        """Start a load or chaos gate detached, against the new version through the router."""
        if gate.type == "migration-rehearsal":
            return self._start_rehearsal(row, spec, gate, run)
        url = self._router_url(row.environment)
        if url is None:
            return GateOutcome(
                "failed", f"{row.environment} has no router to send the {gate.type} gate through"
            )
        environment = spec.environments[row.environment]
        directory = gate_exec.run_dir(self.home, run.id)
        job = {
            "kind": gate.type,
            "gate": gate.model_dump(mode="json"),
            "slos": environment.slos.model_dump(mode="json"),
            "expected_rps": environment.scale.expected_rps,
            "url": url,
            "version": row.version,
            "environment": row.environment,
            "scale": time_scale(),
            "home": str(self.home),
        }
        self._start_job(directory, job)
        return None

    def _start_rehearsal(self, row: Promotion, spec: Spec, gate: Any, run: GateRun) -> GateOutcome | None:
        """Start the rehearsal of the release's pending migrations on a clone (ADR 0014)."""
        declared = spec.services[row.service].migrations
        if declared is None:
            return GateOutcome("passed", f"{row.service} ships no schema migrations: nothing to rehearse")
        source = gate.clone_from or row.environment
        with self.store.read() as session:
            database = resources.resource(session, source)
            if database is None:
                return GateOutcome(
                    "failed",
                    f"{source} has no provisioned database to clone for the rehearsal",
                    {"hint": f"run `conveyor resource provision {source}`"},
                )
            try:  # the clone is migrated as the app's login, as the real database will be
                login, password = resources.migration_login(session, spec, self.keyring, source)
            except ConveyorError as exc:
                return GateOutcome("failed", exc.detail, {"hint": exc.hint} if exc.hint else {})
        job = {
            "kind": gate.type,
            "gate": gate.model_dump(mode="json"),
            "home": str(self.home),
            "digest": row.digest,
            "directory": declared.path,
            "format": declared.format,
            "server": database.server,
            "database": database.database,
            "owner": database.owner_role,
            "service": row.service,
            "release": f"{row.service} {row.version}",
            "lock_timeout_ms": declared.lock_timeout.milliseconds,
            "statement_timeout_ms": declared.statement_timeout.milliseconds,
        }
        # the password travels in the process's environment, never in job.json on disk
        login_env = {gate_proc.LOGIN_VARIABLE: login, gate_proc.PASSWORD_VARIABLE: password}
        self._start_job(gate_exec.run_dir(self.home, run.id), job, login_env)
        return None

    def _start_job(
        self, directory: Path, job: dict[str, Any], secret_env: dict[str, str] | None = None
    ) -> None:
        gate_proc.write_job(directory, job)
        variables = {"CONVEYOR_HOME": str(self.home), **(secret_env or {})}
        if os.environ.get("CONVEYOR_AGENT_URL"):
            variables["CONVEYOR_AGENT_URL"] = os.environ["CONVEYOR_AGENT_URL"]
        command = shlex.join([sys.executable, "-m", "conveyor.pipeline.gate_proc", str(directory)])
        gate_exec.start_command(directory, command, self.home.parent, gate_exec.gate_environment(variables))

    def _gate_variables(self, row: Promotion, run: GateRun) -> dict[str, str]:
        variables = {
            "CONVEYOR_PROMOTION": str(row.id),
            "CONVEYOR_ENVIRONMENT": row.environment,
            "CONVEYOR_SERVICE": row.service,
            "CONVEYOR_VERSION": row.version,
            "CONVEYOR_DIGEST": row.digest,
            "CONVEYOR_GATE": run.name,
            "CONVEYOR_GATE_ATTEMPT": str(run.attempt),
        }
        url = self._router_url(row.environment)
        if url:
            variables["CONVEYOR_TARGET_URL"] = url
        return variables

    def _router_url(self, environment: str) -> str | None:
        try:
            port = self.driver.observe(environment)["router"]["port"]
        except (ConveyorError, KeyError, TypeError):
            return None
        return f"http://127.0.0.1:{port}" if port else None

    def _smoke(self, row: Promotion, spec: Spec, gate: Any) -> GateOutcome:
        url = self._router_url(row.environment)
        if url is None:
            return GateOutcome("failed", f"{row.environment} has no router to send smoke checks through")
        service = spec.services[row.service]
        paths = list(gate.paths) or [service.health.path]
        return gate_exec.smoke(url, row.version, paths, service.version_path, gate.expect_version)

    # -- runtime effects --------------------------------------------------------------------

    def _readiness(self, promotion_id: int) -> Readiness | None:
        with self.store.read() as session:
            row = session.get(Promotion, promotion_id)
            if row is None or row.state not in ("deploying", "rolling_out"):
                return None
            environment, version = row.environment, row.version
        try:
            observed = self.driver.observe(environment)
        except ConveyorError as exc:
            return Readiness(0, 0, error=exc.detail)
        return readiness_of(observed, version)

    def _record_deploy(
        self, session: Session, row: Promotion, spec: Spec, decision: Decision, now: datetime
    ) -> tuple[Decision, deployments.PlannedDeployment | None]:
        """Move to `deploying` and record the deployment, in the transaction that holds the environment."""
        artifact = get_artifact(session, row.service, row.version)
        bundle = str(blob_path(self.home / "artifacts", artifact.digest))
        env, secrets = release_config(session, spec, row.environment, row.service)
        desired = recreate(spec, row.environment, row.service, row.version, row.digest, bundle, env, secrets)
        if config_sha256(desired.env, desired.secrets) != row.config_sha256:
            # the configuration changed since the decision's release was computed: decide again
            held = Decision("queued", "the configuration changed; checking approvals again", decision.checks)
            return held, None
        records.transition(session, ENGINE, row, decision, now)
        first = reconcile.start(session, ENGINE, row, spec, desired, now)
        strategy = spec.environments[row.environment].strategy.type if first is not None else "recreate"
        planned = deployments.record_for_promotion(
            session,
            ENGINE,
            desired,
            row.digest,
            row.version,
            "promotion",
            (row.id, row.step_token),
            now,
            strategy=strategy,
        )
        row.deployment_id = planned.deployment_id
        if first is not None:  # the release's record runs it alone; the runtime gets it beside stable first
            planned = deployments.PlannedDeployment(planned.deployment_id, first)
        return decision, planned

    def _record_rollback(
        self, session: Session, row: Promotion, now: datetime
    ) -> deployments.PlannedDeployment | None:
        """Record the return to the previous release (an unfinished earlier attempt is reused)."""
        assert row.deployment_id is not None
        pending = deployments.unfinished_rollback(session, row.id)
        if pending is not None:
            return pending
        previous = deployments.previous_release(session, row.environment, row.deployment_id)
        if previous is None or previous.desired is None:
            return None
        row.step_token += 1  # the rollback is a step of its own
        desired = EnvironmentDesired.from_json(json.loads(previous.desired))
        return deployments.record_for_promotion(
            session,
            ENGINE,
            desired,
            previous.digest,
            previous.version,
            "rollback",
            (row.id, row.step_token),
            now,
        )

    def _reapply(self, promotion_id: int) -> None:
        """A deployment or traffic step recorded but not yet taken by the runtime (a refusal, a killed
        worker): apply the same desired state again."""
        with self.store.read() as session:
            row = session.get(Promotion, promotion_id)
            if row is None or row.state not in HOLDING_STATES:
                return
            rollout = rollouts.rollout_of(session, row.id)
            deployment = deployment_of(session, row) if row.state == "deploying" else None
            if deployment is not None and deployment.finished_at is None and deployment.desired is not None:
                if rollout is not None and rollout.phase in rollouts.MOVING:
                    desired = reconcile.runtime_desired(session, rollout)
                else:
                    desired = EnvironmentDesired.from_json(json.loads(deployment.desired))
                planned = deployments.PlannedDeployment(deployment.id, desired)
            elif (
                rollout is not None
                and rollout.phase in rollouts.MOVING
                and rollout.applied != reconcile.wanted(rollout)
            ):
                planned, traffic = None, reconcile.runtime_desired(session, rollout)
            else:
                return
        if planned is not None:
            self._apply(promotion_id, planned, None, release=False)
        else:
            self._apply_traffic(promotion_id, traffic, release=False)

    def _apply(
        self,
        promotion_id: int,
        planned: deployments.PlannedDeployment,
        then: Decision | None,
        release: bool = True,
    ) -> None:
        """Hand desired state to the runtime, then record it (and `then`, the decision it completes).

        If the runtime refuses or cannot be reached, the deployment stays unfinished and the promotion
        keeps its state with the reason; the next step applies the same desired state again.
        """
        self._migrate(promotion_id, planned)
        self._hand_to_runtime(promotion_id, planned.desired, "the change")
        now = self.clock.now()
        kill: list[int] = []
        with self.store.write() as session:
            deployments.finish(session, ENGINE, planned.deployment_id, None, now)
            self._mark_applied(session, promotion_id)
            row = self._locked(session, promotion_id)
            if row is None or not records.holds_lease(row, self.owner, now):
                return
            if then is not None:
                kill = self._persist_in(session, row, then, now)
            elif release:
                row.next_run_at = isoformat(now)
                records.release_lease(row)
        self._kill(kill)

    def _migrate(self, promotion_id: int, planned: deployments.PlannedDeployment) -> None:
        """Run the release's pending schema migrations before its instances start (ADR 0014).

        A refusal (it would break a running version, fails the lint, edits an applied file) or a
        failing migration fails the promotion: nothing of it reached the runtime. A busy lock or an
        unreachable server keeps the step, with the reason, and tries again.
        """
        with self.store.read() as session:
            row = session.get(Promotion, promotion_id)
            if row is None:
                return
            spec = deployments.current_spec(session)
            service, version, environment = row.service, row.version, row.environment
        declared = spec.services.get(service)
        if declared is None or declared.migrations is None:
            return
        if version not in {v.version for v in planned.desired.versions}:
            return  # a rollback: migrations never run backwards
        try:
            run = migrations.apply_for(
                self.store.read, self.home, spec, self.keyring, environment, service, version
            )
        except ConveyorError as exc:
            if exc.status in (409, 503) and not isinstance(
                exc, migrations.MigrationRefused | ChecksumChanged
            ):
                self._hold(promotion_id, f"schema migrations did not run: {exc.detail}; retrying")
            else:
                self._fail_deploy(promotion_id, planned, f"schema migrations refused: {exc.detail}")
            raise _Handled from None
        if run is not None and run.applied:
            with self.store.write() as session:
                audit(
                    session,
                    ENGINE,
                    "migrations.apply",
                    now=self.clock.now(),
                    environment=environment,
                    target=f"artifact:{service}@{version}",
                    details={"promotion": promotion_id, **run.to_json()},
                )

    def _hold(self, promotion_id: int, reason: str) -> None:
        now = self.clock.now()
        with self.store.write() as session:
            row = self._locked(session, promotion_id)
            if row is not None and records.holds_lease(row, self.owner, now):
                row.reason = reason
                row.next_run_at = isoformat(now + RETRY_AFTER_ERROR)
                records.release_lease(row)

    def _fail_deploy(self, promotion_id: int, planned: deployments.PlannedDeployment, reason: str) -> None:
        """The deployment cannot be applied at all: record it failed, end its rollout, fail the promotion."""
        now = self.clock.now()
        kill: list[int] = []
        with self.store.write() as session:
            row = self._locked(session, promotion_id)
            if row is None or not records.holds_lease(row, self.owner, now):
                return
            deployments.finish(session, ENGINE, planned.deployment_id, reason, now)
            rollout = rollouts.rollout_of(session, promotion_id)
            if rollout is not None:
                reconcile.finish_aborted(session, ENGINE, rollout, reason, now)
            kill = self._persist_in(session, row, Decision("failed", reason), now)
        self._kill(kill)

    def _hand_to_runtime(self, promotion_id: int, desired: EnvironmentDesired, what: str) -> None:
        """Apply `desired`; on a refusal, record why on the promotion, retry later, and unwind (_Handled)."""
        try:
            self.driver.apply(desired)
        except ConveyorError as exc:
            self._hold(promotion_id, f"the runtime did not take {what}: {exc.detail}; retrying")
            raise _Handled from None

    # -- rollouts -----------------------------------------------------------------------------

    def _measure(self, promotion_id: int) -> Verdict | None:
        """Judge both versions' metrics when the rollout's analysis is due (outside any transaction)."""
        with self.store.read() as session:
            row = session.get(Promotion, promotion_id)
            if row is None or row.state != "rolling_out":
                return None
            rollout = rollouts.rollout_of(session, promotion_id)
            if rollout is None:
                return None
            session.expunge(rollout)
        return reconcile.measure(rollout, self.driver, self.clock.now())

    def _mark_applied(self, session: Session, promotion_id: int) -> None:
        rollout = rollouts.rollout_of(session, promotion_id)
        if rollout is not None and rollout.phase not in ("aborted", "superseded"):
            rollout.applied = reconcile.wanted(rollout)

    def _apply_traffic(self, promotion_id: int, desired: EnvironmentDesired, release: bool = True) -> None:
        """Hand a rollout step's weights to the runtime, then mark the step applied.

        A refusal leaves the step unapplied with the reason; the next step applies it again.
        """
        self._hand_to_runtime(promotion_id, desired, "the new weights")
        with self.store.write() as session:
            self._mark_applied(session, promotion_id)
            if release:
                row = self._locked(session, promotion_id)
                if row is not None and records.holds_lease(row, self.owner, self.clock.now()):
                    records.release_lease(row)

    def _retire_logins(self) -> None:
        """Every few seconds: retire logins and Redis passwords that no instance needs (ADR 0013, 0017)."""
        now = self.clock.now()
        if self._logins_checked_at is not None and (now - self._logins_checked_at).total_seconds() < 5:
            return
        self._logins_checked_at = now
        with self.store.read() as session:
            environments = resources.retiring_environments(session)
        for environment in environments:
            try:
                with self.store.write() as session:
                    spec = applied_spec(session)
                    if spec is not None:
                        resources.retire_unused(session, ENGINE, spec, environment, now)
            except ConveyorError as exc:
                log.warning(
                    "%s: retiring an old database login failed: %s; retrying", environment, exc.detail
                )

    def _schedule_backups(self) -> None:
        """Every few seconds: start due scheduled backups and prune expired ones (ADR 0016), in a thread
        of its own so that a long pg_dump never holds up promotions."""
        now = self.clock.now()
        since = None if self._backups_checked_at is None else (now - self._backups_checked_at).total_seconds()
        if since is not None and since < self.settings.backups:
            return
        if self._backup_thread is not None and self._backup_thread.is_alive():
            return
        self._backups_checked_at = now
        self._backup_thread = threading.Thread(target=self.run_backups, name="conveyor-backups", daemon=True)
        self._backup_thread.start()

    def run_backups(self) -> list[str]:
        """Take the due scheduled backups and prune expired ones now; returns what was done."""
        try:
            return backups.run_schedule(self.store, self.home, ENGINE, self.clock)
        except ConveyorError as exc:  # no conveyor.yaml applied yet, the store briefly unavailable
            log.debug("scheduled backups skipped: %s", exc.detail)
        except Exception:  # the next round tries again; one bad environment must not stop the thread
            log.exception("scheduled backups failed")
        return []

    def _retire_due(self) -> None:
        """Move old versions kept after a switch on (hot → standby → removed) when their time is up."""
        with self.store.read() as session:
            ids = rollouts.due_retirements(session, self.clock.now())
        for rollout_id in ids:
            try:
                self._retire(rollout_id)
            except ConveyorError as exc:
                log.warning(
                    "rollout %s: retiring the old version failed: %s; retrying", rollout_id, exc.detail
                )

    def _retire(self, rollout_id: int) -> None:
        with self.store.write() as session:
            step = reconcile.retire_step(session, ENGINE, rollout_id, self.clock.now())
            if step is None:
                return
            rollout, desired = step
            # applied under the environment lock: a newer release cannot be overwritten by this one
            self.driver.apply(desired)
            rollout.applied = rollout.phase


class _Handled(Exception):
    """The step already recorded why it stopped; the caller only unwinds."""


def readiness_of(observed: dict[str, Any], version: str) -> Readiness:
    """How many instances of `version` are ready, of how many wanted, and whether one crash-loops."""
    if observed.get("error"):
        return Readiness(0, 0, error=str(observed["error"]))
    desired = observed.get("desired") or {}
    wanted = next((int(v["instances"]) for v in desired.get("versions", []) if v["version"] == version), 0)
    mine = [i for i in observed.get("instances", []) if i.get("version") == version]
    # the supervisor's crash-loop verdict, or an instance that keeps exiting without ever being ready
    looping = [
        i
        for i in mine
        if i.get("state") == "crash-loop"
        or (i.get("restarts", 0) >= CRASH_RESTARTS and i.get("state") != "ready")
    ]
    if looping:
        tail = " | ".join((looping[0].get("output_tail") or [])[-5:])
        code, restarts = looping[0].get("last_exit_code"), looping[0].get("restarts", 0)
        why = f"instance exits with code {code}, restarted {restarts} times (last output: {tail or 'none'})"
        return Readiness(0, wanted, crashed=why)
    ready = sum(1 for i in mine if i.get("state") == "ready")
    return Readiness(ready, wanted)


def deployment_of(session: Session, row: Promotion) -> Deployment | None:
    """The deployment a promotion made, if any."""
    return session.get(Deployment, row.deployment_id) if row.deployment_id else None
