"""What an environment keeps: its data policy, backing resources, backups and recovery objectives;
and what a service's tables hold: personal columns, masking rules and subsetting (`ServiceData`)."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from conveyor.spec.fields import Issue, Label, SpecModel, Text, environment_ref, invalid, raise_issues
from conveyor.spec.types import Duration, Size
from conveyor.spec.vocabulary import (
    CacheEngine,
    CacheMode,
    CacheNamespace,
    DatabaseEngine,
    DataPolicyName,
    RecoveryMethod,
)


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
    server: Text | None = None
    """Redis server to provision on, as a URL without a password (null: CONVEYOR_REDIS_URL, else
    redis://127.0.0.1:6379)."""
    namespace: CacheNamespace = "acl"
    """`acl`: a user of its own that may only use keys and channels under PROJECT:ENVIRONMENT:;
    `db-index`: a database number of its own and no user (no isolation from other apps; local use)."""
    db: Annotated[int, Field(ge=1, le=1023)] | None = None
    """With `namespace: db-index`: the database number the environment owns."""
    password_secret: Text = "REDIS_PASSWORD"
    """With `namespace: acl`: the environment's database-password secret the ACL user's password is."""

    @model_validator(mode="after")
    def _namespace_fits(self) -> Cache:
        issues: list[Issue] = []
        if self.namespace == "db-index" and self.db is None:
            issues.append(
                Issue(("db",), "db-index needs a database number", "set db: 1 (or any free number)")
            )
        if self.namespace == "acl" and self.db is not None:
            issues.append(
                Issue(
                    ("db",), "db only applies to namespace: db-index", "remove db, or use namespace: db-index"
                )
            )
        if self.server is not None:
            problem = redis_url_problem(self.server)
            if problem:
                issues.append(
                    Issue(
                        ("server",),
                        problem,
                        "redis://[USER@]HOST:PORT; the admin password comes from CONVEYOR_REDIS_PASSWORD "
                        "of the server process",
                    )
                )
        raise_issues(issues)
        return self


def redis_url_problem(url: str) -> str | None:
    """Why `url` cannot name a Redis server to provision on (None when it can)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return f"'{parts.scheme or url}' is not a Redis URL (redis:// or rediss://)"
    if parts.password:
        return "a password never goes in conveyor.yaml"
    if not parts.hostname:
        return "the URL names no host"
    if parts.path.strip("/") or parts.query:
        return "the URL names a server only (no database number or options)"
    return None


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


def _column_ref(value: str) -> str:
    from conveyor.data.rules import REF_RULE, ColumnRef

    try:
        ColumnRef.parse(value)
    except Exception:
        raise invalid(f"'{value}' is not a column reference", REF_RULE) from None
    return value


_TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?")


def _table_ref(value: str) -> str:
    if not _TABLE_RE.fullmatch(value):
        raise invalid(f"'{value}' is not a table name", "write table or schema.table (letters, digits, '_')")
    return value


def _masking_rule(value: Any) -> Any:
    from conveyor.data.rules import parse_transform
    from conveyor.errors import InvalidRequest

    try:
        parse_transform(value)
    except InvalidRequest as error:
        raise invalid(error.detail, error.hint) from None
    return value


ColumnName = Annotated[str, AfterValidator(_column_ref), Label("table.column")]
TableName = Annotated[str, AfterValidator(_table_ref), Label("table")]
MaskingRule = Annotated[
    Any,
    AfterValidator(_masking_rule),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "object"}]}),
    Label("masking rule"),
]


def _where(value: str) -> str:
    from conveyor.data.subset import where_problem

    problem = where_problem(value)
    if problem is not None:
        raise invalid(
            problem, "write one SQL condition over the table's columns, e.g. created_at > '2025-01-01'"
        )
    return value


SqlCondition = Annotated[str, AfterValidator(_where), Label("SQL condition")]


class SubsetRule(SpecModel):
    """Which rows of a table a masked clone keeps; rows that kept rows reference are always kept too."""

    shorthand: ClassVar[tuple[dict[str, Any], str] | None] = (
        {"type": "string"},
        "`10%` is short for `{percent: 10}`; any other text is short for `{where: TEXT}`",
    )

    where: SqlCondition | None = None
    """SQL condition over the table's columns (no `WHERE`), evaluated in the source database."""
    percent: Annotated[float, Field(gt=0, le=100)] | None = None
    """Share of the rows to keep, picked by a hash of the primary key (the same rows in every clone)."""

    @model_validator(mode="before")
    @classmethod
    def _text_means_rule(cls, data: Any) -> Any:
        if isinstance(data, str):
            text = data.strip()
            if text.endswith("%"):
                try:
                    return {"percent": float(text[:-1])}
                except ValueError:
                    return {"where": data}
            return {"where": data}
        if (
            isinstance(data, dict)
            and isinstance(data.get("percent"), int)
            and not isinstance(data.get("percent"), bool)
        ):
            return {**data, "percent": float(data["percent"])}
        return data

    @model_validator(mode="after")
    def _something(self) -> SubsetRule:
        if self.where is None and self.percent is None:
            raise_issues(
                [Issue(("where",), "a subset rule needs where or percent", "e.g. {percent: 10}", at_key=True)]
            )
        return self


class ServiceData(SpecModel):
    """What the service's tables hold: personal columns, how masked clones mask them, which rows they keep.

    Every environment's database holds the tables of every service; a masked clone applies the
    rules of all services together.
    """

    pii: list[ColumnName] = Field(default_factory=list)
    """Columns that hold personal data (`table.column`); each needs a masking rule."""
    masking: dict[ColumnName, MaskingRule] = Field(default_factory=dict)
    """Masking rule per column: a transform's name (`email`, `hash`, `constant:n/a`) or a mapping
    (`{transform: card_number, keep_last: 4}`); see the data guide for every transform."""
    not_sensitive: list[ColumnName] = Field(default_factory=list)
    """Columns reviewed and found to hold nothing personal: copied unchanged by masked clones."""
    subset: dict[TableName, SubsetRule] = Field(default_factory=dict)
    """Rows a masked clone keeps, per table (`10%` or a SQL condition); rows that kept rows
    reference are kept as well, so every foreign key of the clone holds."""

    @model_validator(mode="after")
    def _consistent(self) -> ServiceData:
        from conveyor.data.rules import Column as SchemaColumn
        from conveyor.data.rules import ColumnRef, parse_transform, suggested_rule

        issues: list[Issue] = []
        masked = {ColumnRef.parse(key): key for key in self.masking}
        for index, name in enumerate(self.pii):
            ref = ColumnRef.parse(name)
            if ref not in masked:
                example = suggested_rule(SchemaColumn(ref.column))
                issues.append(
                    Issue(
                        ("pii", index),
                        f"{name} is declared PII and has no masking rule: a clone would copy it unmasked",
                        f"add it under masking, e.g. {name}: {example}",
                    )
                )
            elif not parse_transform(self.masking[masked[ref]]).kind.masks:
                issues.append(
                    Issue(
                        ("masking", masked[ref]),
                        f"{name} is declared PII and its rule is keep: real values would leave the source",
                        f"mask it, e.g. {name}: {suggested_rule(SchemaColumn(ref.column))}",
                    )
                )
        personal = {ColumnRef.parse(name) for name in self.pii}
        for index, name in enumerate(self.not_sensitive):
            ref = ColumnRef.parse(name)
            if ref in masked:
                issues.append(
                    Issue(
                        ("not_sensitive", index),
                        f"{name} has a masking rule and is also marked not sensitive",
                        "keep one: drop it from not_sensitive, or drop its masking rule",
                    )
                )
            elif ref in personal:
                issues.append(
                    Issue(
                        ("not_sensitive", index),
                        f"{name} is declared PII and also marked not sensitive",
                        "drop it from not_sensitive",
                    )
                )
        for field, names in (("pii", self.pii), ("not_sensitive", self.not_sensitive)):
            seen: set[str] = set()
            for index, name in enumerate(names):
                if name in seen:
                    issues.append(Issue((field, index), f"{name} is listed twice", "list each column once"))
                seen.add(name)
        raise_issues(issues)
        return self

    def reviewed(self) -> set[str]:
        """Every column this declaration says something about: masked or marked not sensitive."""
        return {*self.masking, *self.not_sensitive}
