"""What runs where: deploy (recreate), instances, live traffic and logs, through the runtime driver."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, replace
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from conveyor.api.deps import AuditDep, PrincipalDep, StateDep, guarded, guarded_environment
from conveyor.audit.log import record
from conveyor.deployments import service as deployments
from conveyor.environments.service import get_environment
from conveyor.errors import Conflict, ConveyorError, NotFound
from conveyor.migrations import service as migrations
from conveyor.runtime.desired import EnvironmentDesired, FaultPolicy
from conveyor.store.tables import Deployment

router = APIRouter(tags=["runtime"])


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    override_schema: str | None = Field(
        None,
        min_length=3,
        max_length=500,
        description="go back although the older version cannot use the schema as it is now (audited)",
    )


class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service: str = Field(min_length=1, max_length=64)
    version: str = Field(min_length=1, max_length=128)


def _apply(state: StateDep, ctx: AuditDep, planned: deployments.PlannedDeployment) -> dict[str, Any]:
    """Hand the recorded deployment to the runtime, then record how it went."""
    error: ConveyorError | None = None
    runtime: dict[str, Any] = {}
    try:
        runtime = state.driver.apply(planned.desired)
    except ConveyorError as exc:
        error = exc
    with state.store.write() as session:
        row = deployments.finish(
            session, ctx, planned.deployment_id, error.detail if error else None, state.clock.now()
        )
        summary = _deployment_json(row)
    if error is not None:
        raise error
    return {**summary, "deployment": summary["id"], "runtime": runtime}


@router.post("/api/v1/environments/{name}/deploy", **guarded_environment("deploy"))
def deploy(
    name: str, body: DeployRequest, state: StateDep, principal: PrincipalDep, ctx: AuditDep
) -> dict[str, Any]:
    """Run VERSION of SERVICE in the environment, replacing what runs there (recreate)."""
    root = state.settings.home / "artifacts"
    with state.store.write() as session:
        planned = deployments.begin(
            session, ctx, principal, root, name, body.service, body.version, state.clock.now()
        )
        spec = deployments.current_spec(session)
    try:  # its schema migrations run first, checked like a promotion's (ADR 0014)
        migrations.apply_for(
            state.store.read, state.settings.home, spec, state.keyring, name, body.service, body.version
        )
    except Exception as exc:  # the deployment never stays "applying" behind a failed migration step
        why = (
            exc.detail
            if isinstance(exc, ConveyorError)
            else f"schema migrations failed: {type(exc).__name__}"
        )
        with state.store.write() as session:
            deployments.finish(session, ctx, planned.deployment_id, why, state.clock.now())
        raise
    return _apply(state, ctx, planned)


@router.post("/api/v1/environments/{name}/rollback", **guarded_environment("deploy"))
def rollback(
    name: str, state: StateDep, principal: PrincipalDep, ctx: AuditDep, body: RollbackRequest | None = None
) -> dict[str, Any]:
    """Return the environment to its previous release: the same artifact and configuration snapshot.

    Refused when the older version cannot run against the schema later migrations left (ADR 0014),
    unless `override_schema` gives a reason, which is audited.
    """
    with state.store.write() as session:
        now = state.clock.now()
        planned = deployments.replay(session, ctx, principal, name, "rollback", now)
        desired = planned.desired
        for v in desired.versions:
            problems = migrations.rollback_refusal(
                session,
                state.settings.home,
                deployments.current_spec(session),
                name,
                desired.service,
                v.version,
            )
            if problems and (body is None or body.override_schema is None):
                raise Conflict(
                    f"{desired.service} {v.version} cannot run against {name}'s schema as it is now: "
                    + "; ".join(problems),
                    hint="roll forward with a fix, or pass --override-schema REASON to go back anyway",
                    rule="schema-rollback",
                )
            if problems and body is not None:
                record(
                    session,
                    ctx,
                    "rollback.schema_override",
                    now=now,
                    environment=name,
                    target=f"artifact:{desired.service}@{v.version}",
                    details={"problems": problems, "reason": body.override_schema},
                )
    return _apply(state, ctx, planned)


@router.post("/api/v1/environments/{name}/redeploy", **guarded_environment("deploy"))
def redeploy(name: str, state: StateDep, principal: PrincipalDep, ctx: AuditDep) -> dict[str, Any]:
    """Apply the current release again, exactly as it was."""
    with state.store.write() as session:
        planned = deployments.replay(session, ctx, principal, name, "redeploy", state.clock.now())
    return _apply(state, ctx, planned)


@router.get("/api/v1/environments/{name}/history", **guarded("runtime:read"))
def history(name: str, state: StateDep, limit: int = Query(20, ge=1, le=500)) -> list[dict[str, Any]]:
    """Releases of the environment, newest first: what, who, when, how long, outcome."""
    _check_environment(state, name)
    with state.store.read() as session:
        return [_deployment_json(d) for d in deployments.history(session, name, limit)]


def _deployment_json(row: Deployment) -> dict[str, Any]:
    return {
        "id": row.id,
        "environment": row.environment,
        "kind": row.kind,
        "service": row.service,
        "version": row.version,
        "digest": row.digest,
        "config_sha256": row.config_sha256,
        "state": row.state,
        "created_at": row.created_at,
        "created_by": row.created_by,
        "finished_at": row.finished_at,
        "error": row.error,
        "promotion": row.promotion_id,
    }


def _check_environment(state: StateDep, name: str) -> None:
    with state.store.read() as session:
        get_environment(session, name)


@router.get("/api/v1/runtime", **guarded("runtime:read"))
def observe_all(state: StateDep) -> dict[str, Any]:
    """Instances and routes of every environment the runtime runs."""
    return state.driver.observe()


@router.get("/api/v1/environments/{name}/runtime", **guarded("runtime:read"))
def observe(name: str, state: StateDep) -> dict[str, Any]:
    """Instances, health, restarts and routes of one environment, with its recent deployments."""
    _check_environment(state, name)
    with state.store.read() as session:
        recent = [_deployment_json(d) for d in deployments.history(session, name, 10)]
    return {"observed": state.driver.observe(name), "deployments": recent}


@router.get("/api/v1/environments/{name}/traffic", **guarded("runtime:read"))
def traffic(name: str, state: StateDep, window: float = Query(60.0, gt=0, le=900)) -> dict[str, Any]:
    """Live weights and per-version rates, errors and latency over a window."""
    _check_environment(state, name)
    observed = state.driver.observe(name)
    return {"router": observed["router"], "window": window, "versions": state.driver.metrics(name, window)}


@router.get("/api/v1/environments/{name}/logs", **guarded("runtime:read"))
def logs(
    name: str,
    state: StateDep,
    lines: int = Query(100, ge=0, le=10_000),
    follow: bool = False,
) -> StreamingResponse:
    """The last lines of every instance's output; with follow, new lines as they come."""
    _check_environment(state, name)
    source = state.driver.logs(name, lines, follow)
    first = next(source, None)  # surface an unreachable agent as an error, not an empty stream

    def stream() -> Iterator[bytes]:
        if first is not None:
            yield (first + "\n").encode()
        for line in source:
            yield (line + "\n").encode()

    return StreamingResponse(stream(), media_type="text/plain")


class FaultRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = Field(min_length=1, max_length=128)
    latency_ms: float = Field(0.0, ge=0, le=600_000)
    error_rate: float = Field(0.0, ge=0, le=1)
    abort_rate: float = Field(0.0, ge=0, le=1)


@router.post("/api/v1/environments/{name}/faults", **guarded_environment("rollout"))
def inject_fault(name: str, body: FaultRequest, state: StateDep, ctx: AuditDep) -> dict[str, Any]:
    """Make the router inject latency, errors or aborts into one version's traffic (all zero: clear)."""
    _check_environment(state, name)
    observed = state.driver.observe(name)
    desired = EnvironmentDesired.from_json(observed["desired"])
    if body.version not in {v.version for v in desired.versions}:
        running = ", ".join(v.version for v in desired.versions) or "nothing"
        raise NotFound(
            f"version {body.version} does not run in {name} (running: {running})",
            hint="faults apply to a version the environment's router serves",
        )
    fault = FaultPolicy(body.latency_ms, body.error_rate, body.abort_rate)
    cleared = fault == FaultPolicy()
    versions = tuple(
        replace(v, fault=None if cleared else fault) if v.version == body.version else v
        for v in desired.versions
    )
    result = state.driver.apply(replace(desired, versions=versions))
    with state.store.write() as session:
        record(
            session,
            ctx,
            "runtime.fault.clear" if cleared else "runtime.fault.inject",
            now=state.clock.now(),
            environment=name,
            target=f"version:{body.version}",
            details=body.model_dump(),
        )
    return {
        "environment": name,
        "version": body.version,
        "fault": None if cleared else asdict(fault),
        "router": result["router"],
    }
