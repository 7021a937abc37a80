"""Conveyor's own tables (ORM mappings); Alembic migrations under `migrations/` create them."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
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
    """A deployment of an artifact into an environment, direct or made by a promotion."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("promotion_id", "step_token", name="uq_deployments_promotion_step"),)

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
    promotion_id: Mapped[int | None] = mapped_column(
        Integer, default=None
    )  # set when a promotion deployed it
    step_token: Mapped[int | None] = mapped_column(Integer, default=None)  # the promotion step that made it


class Promotion(Base):
    """A request to move one artifact into one environment; the engine advances it under a lease."""

    __tablename__ = "promotions"
    __table_args__ = (
        Index("ix_promotions_due", "state", "next_run_at"),
        Index("ix_promotions_environment", "environment", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(String(71))
    environment: Mapped[str] = mapped_column(String(64))
    config_sha256: Mapped[str] = mapped_column(String(64))  # with the digest: the release approvals bind to
    state: Mapped[str] = mapped_column(String(24))
    trigger: Mapped[str] = mapped_column(String(16))  # manual | auto
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")  # why it is where it is, in words
    decision: Mapped[str] = mapped_column(Text, default="{}")  # the last decision's verdicts (JSON)
    next_run_at: Mapped[str | None] = mapped_column(String(32), default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_expires_at: Mapped[str | None] = mapped_column(String(32), default=None)
    step_token: Mapped[int] = mapped_column(Integer, default=0)  # changes on every transition
    override_by: Mapped[str | None] = mapped_column(String(64), default=None)
    override_reason: Mapped[str | None] = mapped_column(Text, default=None)
    deployment_id: Mapped[int | None] = mapped_column(Integer, default=None)
    updated_at: Mapped[str] = mapped_column(String(32))
    finished_at: Mapped[str | None] = mapped_column(String(32), default=None)


class PromotionTransition(Base):
    """One state change of a promotion, written with its audit event."""

    __tablename__ = "promotion_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    promotion_id: Mapped[int] = mapped_column(ForeignKey("promotions.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(24))
    to_state: Mapped[str] = mapped_column(String(24))
    at: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)


class GateRun(Base):
    """One run of one gate for one promotion: verdict, evidence and duration; re-runs add attempts."""

    __tablename__ = "gate_runs"
    __table_args__ = (UniqueConstraint("promotion_id", "name", "attempt", name="uq_gate_runs_attempt"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    promotion_id: Mapped[int] = mapped_column(ForeignKey("promotions.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(32))
    phase: Mapped[str] = mapped_column(String(16))  # before (gating) | after (verifying)
    attempt: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # pending|running|waiting|passed|failed|lost|stopped
    started_at: Mapped[str] = mapped_column(String(32))
    finished_at: Mapped[str | None] = mapped_column(String(32), default=None)
    reason: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[str] = mapped_column(Text, default="{}")  # JSON: output tail, links, numbers
    owner: Mapped[str | None] = mapped_column(String(64), default=None)  # the worker that started it
    pid: Mapped[int | None] = mapped_column(Integer, default=None)  # a command gate's process group
    requested_by: Mapped[str | None] = mapped_column(String(64), default=None)  # set for a re-run


class Review(Base):
    """An approval or rejection of a promotion, bound to the exact release it was given on."""

    __tablename__ = "reviews"
    __table_args__ = (UniqueConstraint("promotion_id", "user", "release", name="uq_reviews_person_release"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    promotion_id: Mapped[int] = mapped_column(ForeignKey("promotions.id"), index=True)
    user: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))  # approve | reject
    release: Mapped[str] = mapped_column(String(160))
    at: Mapped[str] = mapped_column(String(32))
    comment: Mapped[str] = mapped_column(Text, default="")


class ArtifactAttachment(Base):
    """Evidence attached to an artifact: a SARIF scan, a JUnit report or a signature; never changes."""

    __tablename__ = "artifact_attachments"
    __table_args__ = (
        UniqueConstraint("artifact_id", "kind", "name", name="uq_artifact_attachments_kind_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # sarif | junit | signature
    name: Mapped[str] = mapped_column(String(64))  # report name; for a signature, the key that verified it
    sha256: Mapped[str] = mapped_column(String(64))  # of the stored bytes, under attachments/sha256/
    size: Mapped[int] = mapped_column(BigInteger)
    summary: Mapped[str] = mapped_column(Text)  # JSON: counts by severity, or tests/failures/errors/skipped
    attached_at: Mapped[str] = mapped_column(String(32))
    attached_by: Mapped[str] = mapped_column(String(64))


class Rollout(Base):
    """The weighted traffic steps of one promotion (blue/green or canary), then the old version's retirement.

    phase: preview → progressing (paused is a flag) → completed | aborted; after completion the old
    version is `hot`, then `standby`, then `retired` (or `superseded` by a later release).
    `applied` names what the runtime has taken (`step:N` or a retirement phase); when it differs from
    the row, the engine applies again.
    """

    __tablename__ = "rollouts"
    __table_args__ = (
        UniqueConstraint("promotion_id", name="uq_rollouts_promotion"),
        Index("ix_rollouts_environment", "environment", "id"),
        Index("ix_rollouts_retire", "phase", "retire_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    promotion_id: Mapped[int] = mapped_column(ForeignKey("promotions.id"))
    environment: Mapped[str] = mapped_column(String(64))
    service: Mapped[str] = mapped_column(String(64))
    new_version: Mapped[str] = mapped_column(String(128))
    stable_version: Mapped[str] = mapped_column(String(128))
    policy: Mapped[str] = mapped_column(Text)  # RolloutPolicy JSON, durations already scaled
    stable_desired: Mapped[str] = mapped_column(Text)  # the stable release's desired state (JSON)
    phase: Mapped[str] = mapped_column(String(16))
    step: Mapped[int] = mapped_column(Integer)
    applied: Mapped[str | None] = mapped_column(String(24), default=None)
    step_started_at: Mapped[str | None] = mapped_column(String(32), default=None)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    pause_reason: Mapped[str | None] = mapped_column(Text, default=None)
    promote_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    abort_requested: Mapped[str | None] = mapped_column(Text, default=None)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    inconclusive: Mapped[int] = mapped_column(Integer, default=0)
    passed: Mapped[bool] = mapped_column(Boolean, default=False)
    last_analysis_at: Mapped[str | None] = mapped_column(String(32), default=None)
    reason: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[str] = mapped_column(String(32))
    finished_at: Mapped[str | None] = mapped_column(String(32), default=None)
    retire_at: Mapped[str | None] = mapped_column(String(32), default=None)


class AnalysisRun(Base):
    """One analysis interval of a rollout: both versions' numbers, the checks, and the verdict."""

    __tablename__ = "analysis_runs"
    __table_args__ = (Index("ix_analysis_runs_rollout_id", "rollout_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id"))
    step: Mapped[int] = mapped_column(Integer)
    weight_bp: Mapped[int] = mapped_column(Integer)
    at: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))  # pass | inconclusive | fail
    reason: Mapped[str] = mapped_column(Text)
    window_s: Mapped[float] = mapped_column(Float)
    numbers: Mapped[str] = mapped_column(Text)  # Verdict JSON: both versions, thresholds, p-values


class ConfigOverride(Base):
    """A runtime override of one configuration key in one environment; the next release takes it."""

    __tablename__ = "config_overrides"
    __table_args__ = (UniqueConstraint("environment", "key", name="uq_config_overrides_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(128))
    value: Mapped[str] = mapped_column(Text)  # JSON scalar, typed by the service's schema
    set_by: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")


class SecretVersion(Base):
    """One version of a secret in one environment, sealed with its own data key (ADR 0010).

    `ciphertext` and `wrapped_key` are emptied when the secret is deleted (crypto-shredding); the
    row stays so the history says who set, rotated and deleted what.
    """

    __tablename__ = "secret_versions"
    __table_args__ = (
        UniqueConstraint("environment", "name", "version", name="uq_secret_versions_version"),
        Index("ix_secret_versions_env_name", "environment", "name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    ciphertext: Mapped[str | None] = mapped_column(Text, default=None)
    wrapped_key: Mapped[str | None] = mapped_column(Text, default=None)
    key_id: Mapped[str | None] = mapped_column(String(32), default=None)
    expires_at: Mapped[str | None] = mapped_column(String(32), default=None)  # certificates
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    destroyed_at: Mapped[str | None] = mapped_column(String(32), default=None)
    binding: Mapped[str | None] = mapped_column(String(128), default=None)
    """The PostgreSQL login role this password version is set on (`conveyor resource`), if any."""


class FeatureFlag(Base):
    """One feature flag of one environment, in flagd's JSON shape; changed at run time, audited."""

    __tablename__ = "feature_flags"
    __table_args__ = (UniqueConstraint("environment", "key", name="uq_feature_flags_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(128))
    definition: Mapped[str] = mapped_column(Text)  # flagd flag JSON: state, variants, defaultVariant, ...
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")


class DatabaseResource(Base):
    """A PostgreSQL database Conveyor provisioned for one environment, with its roles (ADR 0013)."""

    __tablename__ = "database_resources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), unique=True)
    server: Mapped[str] = mapped_column(Text)  # URL without a password
    database: Mapped[str] = mapped_column(String(63))
    owner_role: Mapped[str] = mapped_column(String(63))
    provisioned_by: Mapped[str] = mapped_column(String(64))
    provisioned_at: Mapped[str] = mapped_column(String(32))


class Backup(Base):
    """One pg_dump of an environment's database: file, checksum, row counts of its snapshot (ADR 0016)."""

    __tablename__ = "backups"
    __table_args__ = (Index("ix_backups_environment", "environment", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    environment: Mapped[str] = mapped_column(String(64))
    server: Mapped[str] = mapped_column(Text)  # URL without a password
    database: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(16))  # running | succeeded | failed
    trigger: Mapped[str] = mapped_column(String(16))  # manual | scheduled | pre-restore
    file: Mapped[str | None] = mapped_column(Text, default=None)  # relative to the server's home
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    tables: Mapped[str | None] = mapped_column(Text, default=None)  # JSON {schema.table: rows}
    constraints: Mapped[str | None] = mapped_column(Text, default=None)  # JSON {schema.table.name: validated}
    server_version: Mapped[str | None] = mapped_column(String(64), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_by: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[str] = mapped_column(String(32))
    heartbeat_at: Mapped[str] = mapped_column(String(32))
    finished_at: Mapped[str | None] = mapped_column(String(32), default=None)
    duration_s: Mapped[float | None] = mapped_column(Float, default=None)


class RestoreRun(Base):
    """A restore of a backup into an environment, or a drill into a throwaway database (ADR 0016)."""

    __tablename__ = "restore_runs"
    __table_args__ = (Index("ix_restore_runs_environment", "environment", "kind", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # restore | drill
    backup_id: Mapped[int] = mapped_column(Integer)  # no foreign key: history outlives pruned backups
    source_environment: Mapped[str] = mapped_column(String(64))
    environment: Mapped[str] = mapped_column(String(64))  # the target (a drill's: the backup's own)
    server: Mapped[str] = mapped_column(Text)
    database: Mapped[str] = mapped_column(String(63))
    scratch_database: Mapped[str | None] = mapped_column(String(63), default=None)
    state: Mapped[str] = mapped_column(String(16))  # running | succeeded | failed
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    safety_backup_id: Mapped[int | None] = mapped_column(Integer, default=None)
    sessions_ended: Mapped[int | None] = mapped_column(Integer, default=None)
    restore_s: Mapped[float | None] = mapped_column(Float, default=None)
    rto_s: Mapped[float | None] = mapped_column(Float, default=None)
    rto_met: Mapped[bool | None] = mapped_column(Boolean, default=None)
    backup_age_s: Mapped[float | None] = mapped_column(Float, default=None)
    rpo_s: Mapped[float | None] = mapped_column(Float, default=None)
    rpo_met: Mapped[bool | None] = mapped_column(Boolean, default=None)
    checks: Mapped[str | None] = mapped_column(Text, default=None)  # JSON: what was verified
    created_by: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[str] = mapped_column(String(32))
    heartbeat_at: Mapped[str] = mapped_column(String(32))
    finished_at: Mapped[str | None] = mapped_column(String(32), default=None)
    duration_s: Mapped[float | None] = mapped_column(Float, default=None)
