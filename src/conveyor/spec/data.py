"""What an environment keeps: its data policy, backing resources, backups and recovery objectives."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from conveyor.spec.fields import Issue, Label, SpecModel, Text, environment_ref, raise_issues
from conveyor.spec.types import Duration, Size
from conveyor.spec.vocabulary import CacheEngine, CacheMode, DatabaseEngine, DataPolicyName, RecoveryMethod


class DataPolicy(SpecModel):
    """What kind of data the environment holds and where it comes from."""

    policy: DataPolicyName = "synthetic"
    """`synthetic` (generated), `masked` (a copy with personal data replaced) or `real` (customer data)."""
    source: Annotated[str, environment_ref("data source"), Label("environment name")] | None = None
    """Environment the data is copied from (masked or replicated real data)."""
    refresh: Duration | None = None
    """How often the copy is refreshed from the source."""

    @model_validator(mode="after")
    def _source_fits_policy(self) -> DataPolicy:
        issues: list[Issue] = []
        if self.policy == "masked" and self.source is None:
            issues.append(
                Issue(
                    ("source",),
                    "masked data needs a source environment",
                    "set data.source to the environment whose data is masked, e.g. production",
                )
            )
        if self.policy == "synthetic" and self.source is not None:
            issues.append(
                Issue(
                    ("source",),
                    "synthetic data has no source",
                    "remove source, or use policy: masked",
                    at_key=True,
                )
            )
        if self.refresh is not None and self.source is None and self.policy != "synthetic":
            issues.append(Issue(("refresh",), "refresh needs a data source", "set data.source", at_key=True))
        raise_issues(issues)
        return self


class Database(SpecModel):
    """The environment's own database (never shared with another environment)."""

    engine: DatabaseEngine = "postgres"
    """`postgres` or `sqlite`."""
    size: Size | None = None
    """Storage for the database."""
    ha: bool = False
    """Highly available: a replica that takes over on failure (postgres only)."""
    server: Text | None = None
    """PostgreSQL server to provision on, as a URL without a password (null: CONVEYOR_POSTGRES_URL, else
    postgresql://postgres@127.0.0.1:5432/postgres)."""
    name: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,50}$")] | None = None
    """Database name (null: PROJECT_ENVIRONMENT, lower case)."""
    password_secret: Text = "POSTGRES_PASSWORD"
    """The environment's database-password secret that holds the app's login password."""

    @model_validator(mode="after")
    def _ha_needs_postgres(self) -> Database:
        issues: list[Issue] = []
        if self.ha and self.engine == "sqlite":
            issues.append(
                Issue(("ha",), "sqlite cannot be highly available", "use engine: postgres, or ha: false")
            )
        if self.server is not None:
            problem = server_url_problem(self.server)
            if problem:
                issues.append(
                    Issue(
                        ("server",),
                        problem,
                        "postgresql://USER@HOST:PORT/DATABASE; the password "
                        "comes from PGPASSWORD or ~/.pgpass of the server process",
                    )
                )
        raise_issues(issues)
        return self


def server_url_problem(url: str) -> str | None:
    """Why `url` cannot name a PostgreSQL server to provision on (None when it can)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        return f"'{parts.scheme or url}' is not a PostgreSQL URL"
    if parts.password:
        return "a password never goes in conveyor.yaml"
    if not parts.hostname:
        return "the URL names no host"
    return None


class Cache(SpecModel):
    """The environment's own cache namespace."""

    engine: CacheEngine = "redis"
    """Only `redis` for now."""
    mode: CacheMode = "single"
    """`single` node, `replicated` with failover, or `cluster`."""


class Resources(SpecModel):
    """Backing services provisioned for the environment."""

    database: Database | None = None
    """A database; null for none."""
    cache: Cache | None = None
    """A cache; null for none."""


class Backups(SpecModel):
    """How often the database is backed up and how long backups are kept."""

    every: Duration
    """Time between full backups."""
    point_in_time: bool = False
    """Also keep the write-ahead log so any moment can be restored."""
    keep: Duration = Duration.of(days=30)
    """How long each backup is kept."""

    @model_validator(mode="after")
    def _keep_at_least_one(self) -> Backups:
        if self.keep < self.every:
            raise_issues(
                [
                    Issue(
                        ("keep",),
                        f"backups are kept {self.keep} but taken every {self.every}",
                        "keep backups at least as long as the time between them",
                    )
                ]
            )
        return self


class Recovery(SpecModel):
    """Disaster recovery: how the environment comes back and how much it may lose."""

    method: RecoveryMethod
    """`rebuild` from scratch, `restore-backup`, or `failover` to another environment."""
    rto: Duration | None = None
    """Recovery time objective: longest acceptable outage."""
    rpo: Duration | None = None
    """Recovery point objective: most recent data that may be lost."""
    failover_to: Annotated[str, environment_ref("failover target"), Label("environment name")] | None = None
    """With `failover`: the environment that takes over (usually tier dr)."""

    @model_validator(mode="after")
    def _failover_target(self) -> Recovery:
        issues: list[Issue] = []
        if self.method == "failover" and self.failover_to is None:
            issues.append(
                Issue(("failover_to",), "failover needs a target environment", "set failover_to, e.g. dr")
            )
        if self.method != "failover" and self.failover_to is not None:
            issues.append(
                Issue(
                    ("failover_to",),
                    f"failover_to only applies to method: failover, not {self.method}",
                    "remove failover_to, or use method: failover",
                    at_key=True,
                )
            )
        raise_issues(issues)
        return self
