"""Users and their roles."""

from __future__ import annotations

from fastapi import APIRouter

from conveyor.api.deps import AuditDep, StateDep, guarded
from conveyor.api.schemas import TokenIssued, UserCreate, UserCreated, UserPublic, UserUpdate
from conveyor.auth import service as auth
from conveyor.environments.service import current_role_table
from conveyor.store.tables import User

router = APIRouter(prefix="/api/v1/users", tags=["users"])


def _public(user: User) -> UserPublic:
    return UserPublic(
        name=user.name,
        role=user.role,
        created_at=user.created_at,
        created_by=user.created_by,
        disabled_at=user.disabled_at,
    )


@router.get("", **guarded("users:read"))
def list_users(state: StateDep) -> list[UserPublic]:
    """Every user, oldest first."""
    with state.store.read() as session:
        return [_public(u) for u in auth.list_users(session)]


@router.post("", status_code=201, **guarded("users:manage"))
def add_user(body: UserCreate, state: StateDep, ctx: AuditDep) -> UserCreated:
    """Create a user (and, unless told not to, a first token shown once)."""
    now = state.clock.now()
    with state.store.write() as session:
        user = auth.add_user(session, ctx, body.name, body.role, current_role_table(session), now)
        issued = auth.create_token(session, ctx, user, "initial", now) if body.issue_token else None
        public = _public(user)
    token = (
        TokenIssued(
            id=issued.id, user=issued.user, name=issued.name, expires_at=issued.expires_at, token=issued.token
        )
        if issued
        else None
    )
    return UserCreated(user=public, token=token)


@router.patch("/{name}", **guarded("users:manage"))
def update_user(name: str, body: UserUpdate, state: StateDep, ctx: AuditDep) -> UserPublic:
    """Change a user's role."""
    with state.store.write() as session:
        user = auth.set_role(session, ctx, name, body.role, current_role_table(session), state.clock.now())
        return _public(user)


@router.post("/{name}/disable", **guarded("users:manage"))
def disable_user(name: str, state: StateDep, ctx: AuditDep) -> UserPublic:
    """Disable a user and revoke all their tokens."""
    with state.store.write() as session:
        return _public(auth.disable_user(session, ctx, name, state.clock.now()))
