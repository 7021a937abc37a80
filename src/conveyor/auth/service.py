"""Users and tokens in the store: create, list, disable, revoke, authenticate, bootstrap the admin."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conveyor.audit.log import AuditContext, record
from conveyor.auth.tokens import display_prefix, hash_token, looks_like_token, new_token, new_token_id
from conveyor.clock import isoformat
from conveyor.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthenticated
from conveyor.store.tables import Token, User

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_TOKEN_HINT = "pass a valid token in `Authorization: Bearer …` (CLI: CONVEYOR_TOKEN or .conveyor/credentials)"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    user_id: int
    name: str
    role: str
    token_id: str


@dataclass(frozen=True)
class IssuedToken:
    """A token at the one moment it exists in clear: right after creation."""

    id: str
    user: str
    name: str
    token: str
    expires_at: str | None


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise InvalidRequest(
            f"'{name}' is not a valid user name",
            hint="use 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit",
        )


def _check_role(role: str, roles: Mapping[str, frozenset[str]]) -> None:
    if role not in roles:
        raise InvalidRequest(
            f"unknown role '{role}'",
            hint=f"use one of: {', '.join(sorted(roles))} (roles come from conveyor.yaml's `roles:`)",
        )


def get_user(session: Session, name: str) -> User:
    """The user called `name`, or NotFound."""
    user = session.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None:
        raise NotFound(f"no user named '{name}'", hint="list users with `conveyor user list`")
    return user


def add_user(
    session: Session,
    ctx: AuditContext,
    name: str,
    role: str,
    roles: Mapping[str, frozenset[str]],
    now: datetime,
) -> User:
    """Create a user with a role; audited."""
    _check_name(name)
    _check_role(role, roles)
    if session.execute(select(User.id).where(User.name == name)).first():
        raise Conflict(f"user '{name}' already exists", hint="pick another name, or change its role")
    user = User(name=name, role=role, created_at=isoformat(now), created_by=ctx.actor)
    session.add(user)
    session.flush()
    record(session, ctx, "user.add", now=now, target=f"user:{name}", details={"role": role})
    return user


def set_role(
    session: Session,
    ctx: AuditContext,
    name: str,
    role: str,
    roles: Mapping[str, frozenset[str]],
    now: datetime,
) -> User:
    """Change a user's role; the last active admin cannot be demoted."""
    _check_role(role, roles)
    user = get_user(session, name)
    if user.role == "admin" and role != "admin" and _active_admins(session) <= 1:
        raise Conflict(f"'{name}' is the last admin", hint="make another user admin first")
    old = user.role
    user.role = role
    record(session, ctx, "user.role", now=now, target=f"user:{name}", details={"from": old, "to": role})
    return user


def disable_user(session: Session, ctx: AuditContext, name: str, now: datetime) -> User:
    """Disable a user and revoke every token they hold; the last active admin cannot be disabled."""
    user = get_user(session, name)
    if user.disabled_at:
        raise Conflict(f"user '{name}' is already disabled")
    if user.role == "admin" and _active_admins(session) <= 1:
        raise Conflict(f"'{name}' is the last admin", hint="make another user admin first")
    user.disabled_at = isoformat(now)
    revoked = 0
    for token in session.execute(select(Token).where(Token.user_id == user.id)).scalars():
        if not token.revoked_at:
            token.revoked_at = isoformat(now)
            revoked += 1
    record(session, ctx, "user.disable", now=now, target=f"user:{name}", details={"tokens_revoked": revoked})
    return user


def _active_admins(session: Session) -> int:
    return session.execute(
        select(func.count()).select_from(User).where(User.role == "admin", User.disabled_at.is_(None))
    ).scalar_one()


def list_users(session: Session) -> list[User]:
    """Every user, oldest first."""
    return list(session.execute(select(User).order_by(User.id)).scalars())


def create_token(
    session: Session,
    ctx: AuditContext,
    user: User,
    name: str,
    now: datetime,
    expires_in: timedelta | None = None,
) -> IssuedToken:
    """Issue a token for `user`; only its hash is stored. Audited without the token."""
    if user.disabled_at:
        raise Conflict(f"user '{user.name}' is disabled", hint="tokens cannot be issued to a disabled user")
    if not name.strip() or len(name) > 128:
        raise InvalidRequest("a token name must be 1-128 characters", hint="e.g. --name ci-staging")
    token = new_token()
    row = Token(
        id=new_token_id(),
        user_id=user.id,
        name=name,
        secret_hash=hash_token(token),
        prefix=display_prefix(token),
        created_at=isoformat(now),
        expires_at=isoformat(now + expires_in) if expires_in else None,
    )
    session.add(row)
    session.flush()
    record(
        session,
        ctx,
        "token.create",
        now=now,
        target=f"token:{row.id}",
        details={"user": user.name, "name": name, "expires_at": row.expires_at},
    )
    return IssuedToken(row.id, user.name, name, token, row.expires_at)


def list_tokens(session: Session, user: User | None) -> list[tuple[Token, str]]:
    """Tokens (with their owner's name) of one user, or of everyone when `user` is None."""
    query = select(Token, User.name).join(User, User.id == Token.user_id).order_by(Token.created_at)
    if user is not None:
        query = query.where(Token.user_id == user.id)
    return [(t, n) for t, n in session.execute(query).all()]


def revoke_token(
    session: Session, ctx: AuditContext, token_id: str, caller: Principal, may_manage_all: bool, now: datetime
) -> Token:
    """Revoke a token by id: your own, or anyone's with `tokens:manage`."""
    token = session.get(Token, token_id)
    if token is None:
        raise NotFound(f"no token with id '{token_id}'", hint="list tokens with `conveyor token list`")
    if token.user_id != caller.user_id and not may_manage_all:
        raise Forbidden(
            f"token '{token_id}' belongs to another user",
            hint="revoking other users' tokens needs the permission 'tokens:manage'",
            permission="tokens:manage",
        )
    if token.revoked_at:
        raise Conflict(f"token '{token_id}' is already revoked")
    token.revoked_at = isoformat(now)
    record(session, ctx, "token.revoke", now=now, target=f"token:{token_id}")
    return token


def authenticate(session: Session, presented: str | None, now: datetime) -> tuple[Principal, bool]:
    """The principal behind a bearer token, and whether its last-used time is stale enough to update."""
    if not presented:
        raise Unauthenticated("no API token was presented", hint=_TOKEN_HINT)
    if not looks_like_token(presented):
        raise Unauthenticated("the API token is malformed", hint=_TOKEN_HINT)
    row = session.execute(
        select(Token, User)
        .join(User, User.id == Token.user_id)
        .where(Token.secret_hash == hash_token(presented))
    ).first()
    if row is None:
        raise Unauthenticated("the API token is not valid", hint=_TOKEN_HINT)
    token, user = row
    stamp = isoformat(now)
    if token.revoked_at:
        raise Unauthenticated(f"token {token.id} was revoked at {token.revoked_at}", hint=_TOKEN_HINT)
    if token.expires_at and token.expires_at <= stamp:
        raise Unauthenticated(f"token {token.id} expired at {token.expires_at}", hint=_TOKEN_HINT)
    if user.disabled_at:
        raise Unauthenticated(f"user '{user.name}' is disabled", hint="ask an admin to re-enable the user")
    stale = token.last_used_at is None or token.last_used_at < isoformat(now - timedelta(minutes=1))
    return Principal(user.id, user.name, user.role, token.id), stale


def touch_token(session: Session, token_id: str, now: datetime) -> None:
    """Record that a token was used (at most about once a minute, to spare the store)."""
    token = session.get(Token, token_id)
    if token is not None:
        token.last_used_at = isoformat(now)


def bootstrap_admin(session: Session, now: datetime) -> IssuedToken | None:
    """On an empty store, create user `admin` and its first token; None when users already exist."""
    if session.execute(select(func.count()).select_from(User)).scalar_one():
        return None
    ctx = AuditContext(actor="system")
    admin = User(name="admin", role="admin", created_at=isoformat(now), created_by="system")
    session.add(admin)
    session.flush()
    record(session, ctx, "user.bootstrap", now=now, target="user:admin", details={"role": "admin"})
    return create_token(session, ctx, admin, "bootstrap", now)
