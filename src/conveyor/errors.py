"""The exception tree every layer raises; the API maps it to problem+json, the CLI to a readable message.

ConveyorError                 base: has a title, a detail, a hint (the fix) and an HTTP status
 ├── SpecError                conveyor.yaml is invalid; carries one SpecProblem per mistake (422)
 ├── NotFound                 a named thing does not exist (404)
 ├── Conflict                 the request contradicts current state (409)
 ├── Unauthenticated          missing, unknown, expired or revoked token (401)
 ├── Forbidden                the caller lacks a named permission (403)
 ├── InvalidRequest           a well-formed request with a bad value (400)
 ├── StoreError               the state store cannot serve the request (503)
 │    └── StoreNotMigrated    the store's schema is older than this Conveyor (503)
 └── ClientError              CLI side: server unreachable, bad local file, bad credentials file
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


class ConveyorError(Exception):
    """Root of every error Conveyor raises on purpose; `detail` says what, `hint` says how to fix it."""

    status: ClassVar[int] = 400
    title: ClassVar[str] = "Conveyor error"
    slug: ClassVar[str] = "error"

    def __init__(self, detail: str, *, hint: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.hint = hint
        self.extra = extra

    def to_problem(self) -> dict[str, Any]:
        """RFC 9457 problem details for this error."""
        body: dict[str, Any] = {
            "type": f"https://conveyor.dev/problems/{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.hint:
            body["hint"] = self.hint
        body.update(self.extra)
        return body


@dataclass(frozen=True)
class SpecProblem:
    """One mistake in conveyor.yaml: where it is, which key, what is wrong, and the fix."""

    file: str
    line: int | None
    column: int | None
    path: str
    message: str
    hint: str | None = None

    def location(self) -> str:
        """`file:line:col` (or just the file when the position is unknown)."""
        if self.line is None:
            return self.file
        return f"{self.file}:{self.line}:{self.column or 1}"

    def render(self) -> str:
        """One human line: location, key path, message and fix."""
        where = f"{self.location()}: " + (f"{self.path}: " if self.path else "")
        fix = f" — {self.hint}" if self.hint else ""
        return f"{where}{self.message}{fix}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form used in problem+json `errors`."""
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
            "hint": self.hint,
        }


class SpecError(ConveyorError):
    """conveyor.yaml failed to parse or validate; `problems` lists every mistake found."""

    status = 422
    title = "Invalid conveyor.yaml"
    slug = "invalid-spec"

    def __init__(self, problems: list[SpecProblem], *, detail: str | None = None) -> None:
        self.problems = problems
        first = problems[0] if problems else None
        detail = detail or (
            f"{len(problems)} problem(s) in {first.file}: {first.render()}" if first else "invalid spec"
        )
        extra: dict[str, Any] = {"errors": [p.to_dict() for p in problems]}
        if first:
            extra.update(file=first.file, line=first.line, column=first.column)
        super().__init__(detail, hint=first.hint if first else None, **extra)


class NotFound(ConveyorError):
    status = 404
    title = "Not found"
    slug = "not-found"


class Conflict(ConveyorError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class Unauthenticated(ConveyorError):
    status = 401
    title = "Not authenticated"
    slug = "unauthenticated"


class Forbidden(ConveyorError):
    status = 403
    title = "Permission denied"
    slug = "forbidden"


class InvalidRequest(ConveyorError):
    status = 400
    title = "Invalid request"
    slug = "invalid-request"


class StoreError(ConveyorError):
    status = 503
    title = "State store unavailable"
    slug = "store-unavailable"


class StoreNotMigrated(StoreError):
    title = "State store not migrated"
    slug = "store-not-migrated"


class ClientError(ConveyorError):
    """Raised by the CLI before or instead of talking to the server."""

    title = "Conveyor CLI error"
    slug = "client-error"


class ServerUnreachable(ClientError):
    """Nothing answers at the server URL (not started, wrong URL, or it died)."""

    slug = "server-unreachable"


_BY_STATUS: dict[int, type[ConveyorError]] = {
    400: InvalidRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: InvalidRequest,
    503: StoreError,
}


def error_from_problem(status: int, body: Any) -> ConveyorError:
    """Rebuild a ConveyorError from a problem+json body (or whatever the server sent)."""
    if not isinstance(body, dict):
        return ClientError(f"the server answered HTTP {status} with an unexpected body")
    detail = str(body.get("detail") or body.get("title") or f"HTTP {status}")
    hint = body.get("hint")
    extra = {k: v for k, v in body.items() if k not in ("detail", "hint", "type", "title", "status")}
    if status == 422 and body.get("type", "").endswith("/invalid-spec"):
        problems = [
            SpecProblem(
                file=e.get("file") or "conveyor.yaml",
                line=e.get("line"),
                column=e.get("column"),
                path=e.get("path") or "",
                message=e.get("message") or "",
                hint=e.get("hint"),
            )
            for e in body.get("errors") or []
        ]
        return SpecError(problems, detail=detail)
    cls = _BY_STATUS.get(status, ClientError)
    error = cls(detail, hint=hint, **extra)
    if cls is ClientError:
        error.status = status  # type: ignore[misc]
    return error


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a database error's summary), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
