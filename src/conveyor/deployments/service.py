"""Deploy an artifact straight into an environment (recreate), recorded and audited."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor.artifacts.service import blob_path, get_artifact
from conveyor.audit.log import AuditContext, record
from conveyor.auth.permissions import may_act_on_environment
from conveyor.auth.service import Principal
from conveyor.clock import isoformat
from conveyor.config.service import release_config
from conveyor.deployments.desired import config_sha256, recreate
from conveyor.environments.service import applied_spec, get_environment, lock_environment
from conveyor.errors import Conflict, Forbidden, InvalidRequest, NotFound
from conveyor.pipeline.decide import HOLDING_STATES
from conveyor.runtime.desired import EnvironmentDesired
from conveyor.spec import Spec
from conveyor.store.tables import Deployment, Promotion


def refuse_while_promoting(session: Session, environment: str) -> None:
    """Conflict while a promotion is deploying or verifying in `environment` (it owns the runtime)."""
    busy = (
        session.execute(
            select(Promotion)
            .where(Promotion.environment == environment, Promotion.state.in_(HOLDING_STATES))
            .limit(1)
        )
        .scalars()
        .first()
    )
    if busy is not None:
        raise Conflict(
            f"promotion {busy.id} ({busy.service} {busy.version}) is {busy.state} in {environment}",
            hint=f"wait for it to end (`conveyor promotion wait {busy.id}`), then try again",
            promotion=busy.id,
        )


def current_spec(session: Session) -> Spec:
    """The applied spec (InvalidRequest before the first apply)."""
    spec = applied_spec(session)
    if spec is None:
        raise InvalidRequest("no conveyor.yaml has been applied yet", hint="run `conveyor apply` first")
    return spec


def check_environment_action(spec: Spec, principal: Principal, environment: str, action: str) -> None:
    """Forbidden unless the caller's role may perform `action` in `environment`."""
    if environment not in spec.environments:
        raise NotFound(
            f"environment '{environment}' is no longer in the applied conveyor.yaml",
            hint="see `conveyor spec history` for when it was removed",
        )
    allowed = spec.environments[environment].access.roles_for(action)
    if not may_act_on_environment(principal.role, action, allowed):
        who = ", ".join(allowed) or "nobody but admins"
        raise Forbidden(
            f"role '{principal.role}' lacks the permission 'environment:{action}' in environment "
            f"'{environment}' (roles allowed to {action} there: {who})",
            hint=f"ask someone with one of those roles, or change `access.{action}` in conveyor.yaml",
            permission=f"environment:{action}",
            environment=environment,
        )


def _action(kind: str) -> str:
    """Audit action prefix of a deployment kind (a promotion's deployment is a deploy)."""
    return "deploy" if kind == "promotion" else kind


@dataclass(frozen=True)
class PlannedDeployment:
    """A deployment recorded in the store, and the desired state to hand to the runtime."""

    deployment_id: int
    desired: EnvironmentDesired


def _record(
    session: Session,
    ctx: AuditContext,
    desired: EnvironmentDesired,
    digest: str,
    version: str,
    kind: str,
    now: datetime,
    *,
    promotion: tuple[int, int] | None = None,
    strategy: str = "recreate",
) -> PlannedDeployment:
    promotion_id, step_token = promotion or (None, None)
    row = Deployment(
        environment=desired.environment,
        service=desired.service,
        version=version,
        digest=digest,
        strategy=strategy,
        config_sha256=config_sha256(desired.env, desired.secrets),
        created_at=isoformat(now),
        created_by=ctx.actor,
        state="applying",
        kind=kind,
        desired=json.dumps(desired.to_json(), sort_keys=True),
        promotion_id=promotion_id,
        step_token=step_token,
    )
    session.add(row)
    session.flush()
    record(
        session,
        ctx,
        f"{_action(kind)}.start",
        now=now,
        environment=desired.environment,
        target=f"artifact:{desired.service}@{version}",
        details={
            "deployment": row.id,
            "digest": digest,
            "strategy": strategy,
            "promotion": promotion_id,
        },
    )
    refs = sorted(desired.secret_refs())
    if refs:
        # the release reads these values when the runtime gets them: one audited read per release
        record(
            session,
            ctx,
            "secret.read",
            now=now,
            environment=desired.environment,
            target=f"release:{row.id}",
            details={"release": row.id, "version": version, "secrets": refs, "purpose": kind},
        )
    return PlannedDeployment(row.id, desired)


def record_for_promotion(
    session: Session,
    ctx: AuditContext,
    desired: EnvironmentDesired,
    digest: str,
    version: str,
    kind: str,
    promotion: tuple[int, int],
    now: datetime,
    strategy: str = "recreate",
) -> PlannedDeployment:
    """Record a deployment a promotion makes at one step; the same step finds its earlier record."""
    promotion_id, step_token = promotion
    existing = session.execute(
        select(Deployment).where(Deployment.promotion_id == promotion_id, Deployment.step_token == step_token)
    ).scalar_one_or_none()
    if existing is not None and existing.desired is not None:
        # a worker that died after recording this step: re-apply the same desired state (declarative)
        return PlannedDeployment(existing.id, EnvironmentDesired.from_json(json.loads(existing.desired)))
    return _record(session, ctx, desired, digest, version, kind, now, promotion=promotion, strategy=strategy)


def unfinished_rollback(session: Session, promotion_id: int) -> PlannedDeployment | None:
    """A rollback a promotion recorded but the runtime has not taken yet (to apply again, not anew)."""
    row = session.execute(
        select(Deployment)
        .where(
            Deployment.promotion_id == promotion_id,
            Deployment.kind == "rollback",
            Deployment.finished_at.is_(None),
        )
        .limit(1)
    ).scalar_one_or_none()
    if row is None or row.desired is None:
        return None
    return PlannedDeployment(row.id, EnvironmentDesired.from_json(json.loads(row.desired)))


def previous_release(session: Session, environment: str, before_id: int) -> Deployment | None:
    """The last release applied in `environment` before deployment `before_id` (what to return to)."""
    query = (
        select(Deployment)
        .where(
            Deployment.environment == environment,
            Deployment.state == "applied",
            Deployment.id < before_id,
            Deployment.desired.is_not(None),
        )
        .order_by(Deployment.id.desc())
        .limit(1)
    )
    return session.execute(query).scalar_one_or_none()


def current_release(session: Session, environment: str) -> Deployment | None:
    """The release applied last in `environment`, or None."""
    applied = _applied(session, environment)
    return applied[0] if applied else None


def begin(
    session: Session,
    ctx: AuditContext,
    principal: Principal,
    artifacts_root: Path,
    environment: str,
    service: str,
    version: str,
    now: datetime,
) -> PlannedDeployment:
    """Check permission and inputs, record the deployment (state `applying`), return desired state."""
    get_environment(session, environment)
    spec = current_spec(session)
    check_environment_action(spec, principal, environment, "deploy")
    lock_environment(session, environment)
    refuse_while_promoting(session, environment)
    artifact = get_artifact(session, service, version)
    if artifact.kind != "bundle":
        raise InvalidRequest(
            f"{service} {version} is an OCI image ({artifact.image}); the local runtime runs bundles",
            hint="register a .tar.gz bundle for local environments, or use the Kubernetes runtime",
        )
    bundle = str(blob_path(artifacts_root, artifact.digest))
    env, secrets = release_config(session, spec, environment, service)
    desired = recreate(spec, environment, service, version, artifact.digest, bundle, env, secrets)
    return _record(session, ctx, desired, artifact.digest, version, "deploy", now)


def _applied(session: Session, environment: str) -> list[Deployment]:
    query = (
        select(Deployment)
        .where(Deployment.environment == environment, Deployment.state == "applied")
        .order_by(Deployment.id.desc())
    )
    return list(session.execute(query).scalars())


def replay(
    session: Session, ctx: AuditContext, principal: Principal, environment: str, kind: str, now: datetime
) -> PlannedDeployment:
    """Rollback (the previous release) or redeploy (the current one), same artifact and config."""
    get_environment(session, environment)
    check_environment_action(current_spec(session), principal, environment, "deploy")
    lock_environment(session, environment)
    refuse_while_promoting(session, environment)
    applied = _applied(session, environment)
    if not applied:
        raise InvalidRequest(
            f"nothing has been deployed to {environment} yet",
            hint=f"deploy first: conveyor deploy SERVICE VERSION --env {environment}",
        )
    current = applied[0]
    source: Deployment | None = current
    if kind == "rollback":
        # the previous release is the last applied one that differs in artifact or configuration
        release = (current.digest, current.config_sha256)
        source = next((d for d in applied[1:] if (d.digest, d.config_sha256) != release), None)
    if source is None:
        raise InvalidRequest(
            f"{environment} has no earlier release to roll back to (it only ever ran "
            f"{current.service} {current.version} with this configuration)",
            hint=f"see `conveyor history {environment}`",
        )
    if source.desired is None:
        raise InvalidRequest(
            f"deployment {source.id} predates release snapshots and cannot be replayed",
            hint="deploy the version you want explicitly with `conveyor deploy`",
        )
    desired = EnvironmentDesired.from_json(json.loads(source.desired))
    return _record(session, ctx, desired, source.digest, source.version, kind, now)


def finish(
    session: Session, ctx: AuditContext, deployment_id: int, error: str | None, now: datetime
) -> Deployment:
    """Mark a deployment applied or failed (with the reason), audited."""
    row = session.get(Deployment, deployment_id)
    assert row is not None
    if row.finished_at is not None:
        return row  # a worker that resumed this step after its first attempt finished it
    row.state = "failed" if error else "applied"
    row.finished_at = isoformat(now)
    row.error = error
    record(
        session,
        ctx,
        f"{_action(row.kind)}.finish",
        now=now,
        environment=row.environment,
        target=f"artifact:{row.service}@{row.version}",
        outcome="failure" if error else "success",
        details={"deployment": row.id, "error": error},
    )
    return row


def history(session: Session, environment: str, limit: int = 20) -> list[Deployment]:
    """Deployments into an environment, newest first."""
    query = (
        select(Deployment)
        .where(Deployment.environment == environment)
        .order_by(Deployment.id.desc())
        .limit(limit)
    )
    return list(session.execute(query).scalars())
