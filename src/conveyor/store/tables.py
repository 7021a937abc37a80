"""Conveyor's own tables (ORM mappings); Alembic migrations under `migrations/` create them."""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(64))
    disabled_at: Mapped[str | None] = mapped_column(String(32), default=None)


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    # sha256 of the token; the token itself is never stored
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[str] = mapped_column(String(32))
    expires_at: Mapped[str | None] = mapped_column(String(32), default=None)
    last_used_at: Mapped[str | None] = mapped_column(String(32), default=None)
    revoked_at: Mapped[str | None] = mapped_column(String(32), default=None)


class SpecRevision(Base):
    __tablename__ = "spec_revisions"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    source_sha256: Mapped[str] = mapped_column(String(64))
    document_sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(Text)
    document: Mapped[str] = mapped_column(Text)  # canonical JSON of the validated spec
    message: Mapped[str | None] = mapped_column(Text, default=None)


class Environment(Base):
    """The current projection of applied environments; a removed one keeps its row for history."""

    __tablename__ = "environments"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    tier: Mapped[str] = mapped_column(String(32))
    spec: Mapped[str] = mapped_column(Text)  # canonical JSON of this environment's block
    position: Mapped[int] = mapped_column(Integer)
    created_revision: Mapped[int] = mapped_column(Integer)
    updated_revision: Mapped[int] = mapped_column(Integer)
    removed_revision: Mapped[int | None] = mapped_column(Integer, default=None)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_at", "at"),
        Index("ix_audit_events_environment", "environment"),
        Index("ix_audit_events_actor", "actor"),
        Index("ix_audit_events_action", "action"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    at: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    environment: Mapped[str | None] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(16))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))
    request_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[str] = mapped_column(Text)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """One row: the chain's last sequence number and hash; writers lock it to append in order."""

    __tablename__ = "audit_head"
    __table_args__ = (UniqueConstraint("id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class Artifact(Base):
    """One registered build: immutable; the same service+version never changes digest."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("service", "version", name="uq_artifacts_service_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(String(71))
    kind: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(BigInteger)
    registered_at: Mapped[str] = mapped_column(String(32))
    registered_by: Mapped[str] = mapped_column(String(64))
    image: Mapped[str | None] = mapped_column(String(512), default=None)  # OCI reference, by digest
    source_commit: Mapped[str | None] = mapped_column(String(64), default=None)
    source_branch: Mapped[str | None] = mapped_column(String(255), default=None)
    build_url: Mapped[str | None] = mapped_column(String(1024), default=None)
    builder: Mapped[str | None] = mapped_column(String(255), default=None)


class Deployment(Base):
    """A direct deployment of an artifact into an environment (the recreate path)."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), index=True)
    service: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(String(71))
    strategy: Mapped[str] = mapped_column(String(16))
    config_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16), default="deploy")  # deploy | rollback | redeploy
    desired: Mapped[str | None] = mapped_column(Text, default=None)  # the exact desired state applied
    finished_at: Mapped[str | None] = mapped_column(String(32), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
