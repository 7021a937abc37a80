"""Request and response bodies; public schemas are separate so hashes and tokens cannot leak."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpecSubmit(_Body):
    source: str = Field(description="the conveyor.yaml text", max_length=2_000_000)
    filename: str = Field(default="conveyor.yaml", max_length=255)


class SpecApply(SpecSubmit):
    expected_revision: int | None = Field(
        default=None, ge=0, description="refuse unless this is still the newest revision (from plan)"
    )
    message: str | None = Field(default=None, max_length=2000)


class UserCreate(_Body):
    name: str = Field(min_length=1, max_length=64)
    role: str = Field(min_length=1, max_length=64)
    issue_token: bool = Field(default=True, description="also issue a first token, shown once")


class UserUpdate(_Body):
    role: str = Field(min_length=1, max_length=64)


class UserPublic(BaseModel):
    name: str
    role: str
    created_at: str
    created_by: str
    disabled_at: str | None


class TokenCreate(_Body):
    name: str = Field(default="cli", min_length=1, max_length=128)
    user: str | None = Field(default=None, description="issue for another user (needs tokens:manage)")
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class TokenPublic(BaseModel):
    id: str
    user: str
    name: str
    prefix: str
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None


class TokenIssued(BaseModel):
    id: str
    user: str
    name: str
    expires_at: str | None
    token: str = Field(description="shown once; only its hash is stored")


class UserCreated(BaseModel):
    user: UserPublic
    token: TokenIssued | None


class RevisionSummary(BaseModel):
    number: int
    created_at: str
    created_by: str
    filename: str
    source_sha256: str
    document_sha256: str
    message: str | None


class RevisionDetail(RevisionSummary):
    source: str
    document: dict[str, Any]


class EnvironmentPublic(BaseModel):
    name: str
    tier: str
    created_revision: int
    updated_revision: int
    removed_revision: int | None
    spec: dict[str, Any]


class ApplyOutcome(BaseModel):
    applied: bool
    revision: int
    plan: dict[str, Any]
