"""API tokens: yours with `tokens:own`, anyone's with `tokens:manage`."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Query

from conveyor.api.deps import AuditDep, PrincipalDep, StateDep, caller_may, guarded
from conveyor.api.schemas import TokenCreate, TokenIssued, TokenPublic
from conveyor.auth import service as auth
from conveyor.errors import Forbidden
from conveyor.store.tables import Token, User

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


def _public(token: Token, user: str) -> TokenPublic:
    return TokenPublic(
        id=token.id,
        user=user,
        name=token.name,
        prefix=token.prefix,
        created_at=token.created_at,
        expires_at=token.expires_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
    )


def _need_manage(state: StateDep, principal: PrincipalDep, what: str) -> None:
    if not caller_may(state, principal, "tokens:manage"):
        raise Forbidden(
            f"{what} needs the permission 'tokens:manage'",
            hint="without it you can manage only your own tokens",
            permission="tokens:manage",
        )


@router.get("", **guarded("tokens:own"))
def list_tokens(
    state: StateDep,
    principal: PrincipalDep,
    user: str | None = Query(None, description="another user's tokens (needs tokens:manage)"),
    all_users: bool = Query(False, alias="all", description="every user's tokens (needs tokens:manage)"),
) -> list[TokenPublic]:
    """Tokens (never their values): yours by default."""
    if all_users or (user and user != principal.name):
        _need_manage(state, principal, "listing other users' tokens")
    with state.store.read() as session:
        owner = None if all_users else auth.get_user(session, user or principal.name)
        return [_public(t, n) for t, n in auth.list_tokens(session, owner)]


@router.post("", status_code=201, **guarded("tokens:own"))
def create_token(body: TokenCreate, state: StateDep, principal: PrincipalDep, ctx: AuditDep) -> TokenIssued:
    """Issue a token; its value is in this response only."""
    if body.user and body.user != principal.name:
        _need_manage(state, principal, "issuing tokens for other users")
    expires = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    with state.store.write() as session:
        owner = auth.get_user(session, body.user or principal.name)
        issued = auth.create_token(session, ctx, owner, body.name, state.clock.now(), expires)
    return TokenIssued(
        id=issued.id, user=issued.user, name=issued.name, expires_at=issued.expires_at, token=issued.token
    )


@router.delete("/{token_id}", **guarded("tokens:own"))
def revoke_token(token_id: str, state: StateDep, principal: PrincipalDep, ctx: AuditDep) -> TokenPublic:
    """Revoke a token by id."""
    may_all = caller_may(state, principal, "tokens:manage")
    with state.store.write() as session:
        token = auth.revoke_token(session, ctx, token_id, principal, may_all, state.clock.now())
        owner = session.get(User, token.user_id)
        assert owner is not None  # tokens.user_id is a foreign key
        return _public(token, owner.name)
