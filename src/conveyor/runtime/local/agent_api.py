"""The agent's small HTTP API on loopback, guarded by the agent token (0600 file under the home)."""

from __future__ import annotations

import asyncio
import hmac
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

from conveyor import __version__
from conveyor.api import errors
from conveyor.api.context import RequestIdMiddleware
from conveyor.errors import InvalidRequest, Unauthenticated
from conveyor.runtime.desired import EnvironmentDesired
from conveyor.runtime.local.agent import Agent
from conveyor.runtime.local.client import ensure_agent_token
from conveyor.runtime.local.instance_logs import follow, tail


def create_agent_app(home: Path, *, tick: float = 0.1) -> FastAPI:
    """The agent application for this Conveyor home."""
    agent = Agent(home, tick=tick)
    token = ensure_agent_token(home)

    def authorised(request: Request) -> None:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip(), token):
            raise Unauthenticated(
                "the agent token is missing or wrong",
                hint="the server reads it from .conveyor/agent.token; pass it as a bearer token",
            )

    guard = [Depends(authorised)]

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await agent.start()
        try:
            yield
        finally:
            await agent.stop()

    app = FastAPI(
        title="Conveyor agent", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.agent = agent
    errors.install(app)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/healthz")
    async def healthz() -> dict[str, str | int]:
        # the pid lets `conveyor up` tell its own agent from another process answering on the port
        return {"status": "ok", "pid": os.getpid()}

    @app.get("/v1/environments", dependencies=guard)
    async def observe_all() -> dict[str, Any]:
        return agent.observe()

    @app.get("/v1/environments/{name}", dependencies=guard)
    async def observe(name: str) -> dict[str, Any]:
        return agent.observe(name)[name]

    @app.put("/v1/environments/{name}", dependencies=guard)
    async def put(name: str, body: dict[str, Any]) -> dict[str, Any]:
        # secret values travel beside the desired state, never inside it (ADR 0010)
        values = body.pop("secret_values", None) or {}
        if not isinstance(values, dict):
            raise InvalidRequest("secret_values must be an object of reference → value")
        desired = EnvironmentDesired.from_json({**body, "environment": name})
        return (await agent.put(desired, {str(k): str(v) for k, v in values.items()}))[name]

    @app.delete("/v1/environments/{name}", dependencies=guard)
    async def remove(name: str) -> dict[str, str]:
        await agent.remove(name)
        return {"removed": name}

    @app.post("/v1/environments/{name}/instances/{instance:path}/kill", dependencies=guard)
    async def kill(name: str, instance: str) -> dict[str, Any]:
        # an instance id is its key, environment/service/version/index, slashes included
        return await agent.kill_instance(name, instance)

    @app.put("/v1/environments/{name}/flags", dependencies=guard)
    async def put_flags(name: str, body: dict[str, Any]) -> dict[str, Any]:
        # a flagd document: instances re-read the file, nothing restarts
        return agent.put_flags(name, body)

    @app.get("/v1/environments/{name}/metrics", dependencies=guard)
    async def metrics(name: str, window: float = Query(60.0, gt=0, le=900)) -> dict[str, Any]:
        return agent.window(name, window)

    @app.get("/v1/environments/{name}/logs", dependencies=guard)
    async def logs(
        name: str,
        lines: int = Query(100, ge=0, le=10_000),
        follow_: bool = Query(False, alias="follow"),
    ) -> StreamingResponse:
        files = agent.log_files(name)

        async def stream() -> AsyncIterator[bytes]:
            for label, path in files:
                for line in await asyncio.to_thread(tail, path, lines):
                    yield agent.redact(f"[{label}] {line}\n").encode()
            if not follow_:
                return
            queue: asyncio.Queue[str] = asyncio.Queue()

            async def pump(label: str, path: Path) -> None:
                async for line in follow(path):
                    await queue.put(agent.redact(f"[{label}] {line}\n"))

            tasks = [asyncio.create_task(pump(label, path)) for label, path in files]
            try:
                while True:
                    yield (await queue.get()).encode()
            finally:
                for task in tasks:
                    task.cancel()

        return StreamingResponse(stream(), media_type="text/plain")

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=guard)
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(
            agent.metrics.prometheus_text(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    return app
