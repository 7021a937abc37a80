"""Typed dependencies every route declares once: the store, the clock, the caller and its permission."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from conveyor.audit.log import AuditContext, record
from conveyor.auth import service as auth
from conveyor.auth.permissions import GLOBAL_PERMISSIONS, has_permission
from conveyor.clock import Clock
from conveyor.environments.service import current_role_table
from conveyor.errors import Forbidden
from conveyor.pipeline.engine import Engine
from conveyor.runtime.driver import RuntimeDriver
from conveyor.secrets.crypto import Keyring
from conveyor.settings import Settings
from conveyor.store.db import Store

log = logging.getLogger("conveyor.api")


@dataclass
class AppState:
    """What the running server shares between requests."""

    settings: Settings
    store: Store
    clock: Clock
    started_at: str
    schema_revision: str
    driver: RuntimeDriver
    keyring: Keyring
    engine: Engine | None = None

    def wake_engine(self) -> None:
        """Let the engine look at promotions now (a request, review or report just arrived)."""
        if self.engine is not None:
            self.engine.wake()


def app_state(request: Request) -> AppState:
    """The shared server state `create_app` attached to the application."""
    state: AppState = request.app.state.conveyor
    return state


StateDep = Annotated[AppState, Depends(app_state)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def authenticated(request: Request, state: StateDep) -> auth.Principal:
    """The caller behind the request's bearer token (401 otherwise)."""
    now = state.clock.now()
    with state.store.read() as session:
        principal, stale = auth.authenticate(session, _bearer(request), now)
    if stale:
        with state.store.write() as session:
            auth.touch_token(session, principal.token_id, now)
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[auth.Principal, Depends(authenticated)]


def audit_context(request: Request) -> AuditContext:
    """Who and from where, for the audit events this request writes."""
    principal = getattr(request.state, "principal", None)
    return AuditContext(
        actor=principal.name if principal else "anonymous",
        source_ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        request_id=getattr(request.state, "request_id", None),
    )


AuditDep = Annotated[AuditContext, Depends(audit_context)]


def caller_may(state: AppState, principal: auth.Principal, permission: str) -> bool:
    """Whether the caller's role holds a global permission under the applied spec."""
    with state.store.read() as session:
        table = current_role_table(session)
    return has_permission(table, principal.role, permission)


def require(permission: str) -> Callable[..., auth.Principal]:
    """A dependency that authenticates and demands `permission`; denied writes are audited."""
    if permission not in GLOBAL_PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")

    def check(request: Request, state: StateDep, principal: PrincipalDep) -> auth.Principal:
        if caller_may(state, principal, permission):
            return principal
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            with state.store.write() as session:
                record(
                    session,
                    audit_context(request),
                    "access.denied",
                    now=state.clock.now(),
                    target=f"{request.method} {request.url.path}",
                    outcome="denied",
                    details={"permission": permission, "role": principal.role},
                )
        raise Forbidden(
            f"role '{principal.role}' of user '{principal.name}' lacks the permission '{permission}'",
            hint=f"ask an admin for a role with '{permission}' ({GLOBAL_PERMISSIONS[permission]})",
            permission=permission,
        )

    return check


def guarded(permission: str, openapi_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Route decorator arguments that enforce `permission` and publish it as `x-permission`."""
    return {
        "dependencies": [Depends(require(permission))],
        "openapi_extra": {**(openapi_extra or {}), "x-permission": permission},
    }


def _check_environment_action(
    request: Request, state: AppState, principal: auth.Principal, name: str, action: str
) -> None:
    """Forbidden (audited) unless the caller may perform `action` in environment `name`."""
    from conveyor.deployments.service import check_environment_action, current_spec

    with state.store.read() as session:
        spec = current_spec(session)
    try:
        check_environment_action(spec, principal, name, action)
    except Forbidden:
        with state.store.write() as session:
            record(
                session,
                audit_context(request),
                "access.denied",
                now=state.clock.now(),
                environment=name,
                target=f"{request.method} {request.url.path}",
                outcome="denied",
                details={"permission": f"environment:{action}", "role": principal.role},
            )
        raise


def require_environment(action: str) -> Callable[..., auth.Principal]:
    """A dependency that demands an environment action (`access.<action>` in conveyor.yaml)."""
    from conveyor.environments.service import get_environment

    def check(name: str, request: Request, state: StateDep, principal: PrincipalDep) -> auth.Principal:
        with state.store.read() as session:
            get_environment(session, name)
        _check_environment_action(request, state, principal, name, action)
        return principal

    return check


def require_promotion_action(action: str) -> Callable[..., auth.Principal]:
    """Like `require_environment`, for the environment a promotion (path `promotion_id`) moves into."""
    from conveyor.deployments.service import current_spec
    from conveyor.pipeline.records import get_promotion

    def check(
        promotion_id: int, request: Request, state: StateDep, principal: PrincipalDep
    ) -> auth.Principal:
        with state.store.read() as session:
            environment = get_promotion(session, promotion_id).environment
            spec = current_spec(session)
        env = spec.environments.get(environment)
        if action == "approve" and env is not None and principal.name in env.approvals.approvers:
            return principal  # a reviewer named in the policy needs no role
        _check_environment_action(request, state, principal, environment, action)
        return principal

    return check


def guarded_promotion(action: str) -> dict[str, Any]:
    """Route arguments that enforce an action in the promotion's environment, published as `x-permission`."""
    return {
        "dependencies": [Depends(require_promotion_action(action))],
        "openapi_extra": {"x-permission": f"environment:{action}"},
    }


def guarded_environment(action: str) -> dict[str, Any]:
    """Route arguments that enforce an environment action, published as `x-permission`."""
    return {
        "dependencies": [Depends(require_environment(action))],
        "openapi_extra": {"x-permission": f"environment:{action}"},
    }
