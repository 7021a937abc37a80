"""How a service's schema migrations ship and run (ADR 0014, ADR 0018)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from conveyor.spec.fields import Issue, SpecModel, Text, raise_issues
from conveyor.spec.types import Duration

LintRule = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,63}$")]
MigrationFormat = Literal["sql", "alembic"]


class Migrations(SpecModel):
    """Schema migrations inside the artifact bundle (SQL files or an Alembic project), run before the
    release's instances start."""

    shorthand: ClassVar[tuple[dict[str, Any], str] | None] = (
        {"type": "string"},
        "a directory of SQL files inside the bundle, short for `{path: DIRECTORY}`",
    )

    path: Text
    """Directory in the bundle: with `format: sql` it holds `NNNN_name.sql` files (and optional
    `NNNN_name.down.sql`); with `format: alembic` it holds `alembic.ini`."""
    format: MigrationFormat = "sql"
    """`sql`: a directory of SQL files; `alembic`: an Alembic project, rendered to SQL offline (ADR 0018)."""
    lock_timeout: Duration = Duration.of(seconds=5)
    """Longest wait for a table lock; a migration that waits longer rolls back and is retried."""
    statement_timeout: Duration = Duration.of(minutes=15)
    """Longest a single statement may run."""
    lint_exclude: list[LintRule] = Field(default_factory=list)
    """squawk rules not to enforce for this service (e.g. `require-concurrent-index-creation`)."""

    @model_validator(mode="before")
    @classmethod
    def _directory_means_path(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _relative_path(self) -> Migrations:
        parts = self.path.replace("\\", "/").split("/")
        if self.path.startswith("/") or ".." in parts:
            raise_issues(
                [
                    Issue(
                        ("path",),
                        f"{self.path!r} leaves the bundle",
                        "name a directory inside the bundle, e.g. migrations",
                    )
                ]
            )
        if self.format == "alembic" and parts[-1].endswith(".ini"):
            directory = "/".join(parts[:-1]) or "."
            raise_issues(
                [
                    Issue(
                        ("path",),
                        f"{self.path!r} names a file; with format alembic, path is the directory "
                        "holding alembic.ini",
                        f"write path: {directory}",
                    )
                ]
            )
        return self
