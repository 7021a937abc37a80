"""Map every error to RFC 9457 problem+json with a `hint`; no traceback ever reaches the caller."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from conveyor.errors import ConveyorError

log = logging.getLogger("conveyor.api")
PROBLEM = "application/problem+json"


def problem_response(body: dict[str, Any], request: Request) -> JSONResponse:
    """A problem+json response carrying the request id (so a user can quote it)."""
    body.setdefault("instance", request.url.path)
    body["request_id"] = getattr(request.state, "request_id", None)
    headers = {"WWW-Authenticate": "Bearer"} if body.get("status") == 401 else None
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "request"


def install(app: FastAPI) -> None:
    """Register the handlers on `app`."""

    @app.exception_handler(ConveyorError)
    async def conveyor_error(request: Request, exc: ConveyorError) -> JSONResponse:
        return problem_response(exc.to_problem(), request)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
        first = errors[0] if errors else {"field": "request", "message": "invalid"}
        return problem_response(
            {
                "type": "https://conveyor.dev/problems/invalid-request",
                "title": "Invalid request",
                "status": 422,
                "detail": f"{first['field']}: {first['message']}",
                "hint": "see /openapi.json for the request schema",
                "errors": errors,
            },
            request,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        hint = "see /openapi.json for the routes this server has" if exc.status_code in (404, 405) else None
        body: dict[str, Any] = {
            "type": "about:blank",
            "title": str(exc.detail),
            "status": exc.status_code,
            "detail": f"{request.method} {request.url.path}: {exc.detail}",
        }
        if hint:
            body["hint"] = hint
        return problem_response(body, request)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return problem_response(
            {
                "type": "https://conveyor.dev/problems/internal",
                "title": "Internal server error",
                "status": 500,
                "detail": "the server failed to handle this request; it has been logged",
                "hint": "quote the request_id when you report it; the server log has the details",
            },
            request,
        )
