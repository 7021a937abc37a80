"""The FastAPI application: wiring of routers, middleware, error handlers and server start-up."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from conveyor import __version__
from conveyor.api import errors
from conveyor.api.context import RequestIdMiddleware
from conveyor.api.deps import AppState, guarded
from conveyor.api.routes import (
    artifacts,
    audit,
    backups,
    config,
    data,
    environments,
    flags,
    migrations,
    promotions,
    resources,
    rollouts,
    runtime,
    secrets,
    spec,
    system,
    tokens,
    users,
)
from conveyor.auth.service import bootstrap_admin
from conveyor.clock import Clock, SystemClock, isoformat
from conveyor.credentials import write_credentials
from conveyor.errors import Conflict
from conveyor.pipeline.engine import Engine
from conveyor.runtime.delivery import DeliveringDriver
from conveyor.runtime.driver import RuntimeDriver
from conveyor.runtime.local.client import LocalDriver
from conveyor.secrets.keys import load_keyring
from conveyor.secrets.service import check_keyring
from conveyor.settings import Settings
from conveyor.store.db import Store
from conveyor.store.migrate import ensure_migrated

log = logging.getLogger("conveyor.server")


def bootstrap(state: AppState, public_url: str) -> None:
    """On an empty store, create the admin and write its token to the 0600 credentials file."""
    final = state.settings.credentials_file
    staged = final.with_name(f".{final.name}.staged")
    try:
        with state.store.write() as session:
            issued = bootstrap_admin(session, state.clock.now())
            if issued is None:
                return
            # staged before the commit (a full disk fails the bootstrap), moved in place after it
            write_credentials(staged, url=public_url, user=issued.user, token=issued.token)
    except Conflict:
        staged.unlink(missing_ok=True)
        log.info("another server created the admin user at the same moment")
        return
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    os.replace(staged, final)
    log.info("created user 'admin'; its token is in %s", final)


def _check_master_key(state: AppState) -> None:
    """Say at start-up when stored secrets are sealed under a master key the server does not have."""
    with state.store.read() as session:
        missing = check_keyring(session, state.keyring)
    if missing:
        log.error(
            "stored secrets are sealed under master key(s) %s, which the server does not have (it has %s): "
            "no secret can be read or written until it starts with the right key (CONVEYOR_MASTER_KEY "
            "or .conveyor/master.key)",
            ", ".join(missing),
            ", ".join(k.id for k in state.keyring.keys),
        )


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    public_url: str = "",
    driver: RuntimeDriver | None = None,
) -> FastAPI:
    """Build the app for `settings`; refuses (StoreNotMigrated) when the store is not migrated."""
    store = Store(settings.database_url)
    schema_revision = ensure_migrated(store)
    clock = clock or SystemClock()
    keyring = load_keyring(settings.home, create=True)  # a malformed master key stops the start here
    state = AppState(
        settings,
        store,
        clock,
        isoformat(clock.now()),
        schema_revision,
        DeliveringDriver(driver or LocalDriver.for_home(settings.home), store, keyring),
        keyring,
    )
    _check_master_key(state)
    bootstrap(state, public_url)
    if os.environ.get("CONVEYOR_ENGINE", "on") != "off":
        state.engine = Engine(store, clock, state.driver, settings.home, keyring=keyring)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if state.engine is not None:
            state.engine.start()
        yield
        if state.engine is not None:
            state.engine.stop()
        store.dispose()

    app = FastAPI(
        title="Conveyor",
        version=__version__,
        description="Release control plane API. Every route but /healthz and /readyz needs a bearer token.",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.conveyor = state
    errors.install(app)
    for module in (
        system,
        spec,
        environments,
        config,
        flags,
        artifacts,
        promotions,
        migrations,
        resources,
        backups,
        data,
        rollouts,
        runtime,
        secrets,
        users,
        tokens,
        audit,
    ):
        app.include_router(module.router)

    @app.get("/openapi.json", tags=["system"], include_in_schema=True, **guarded("status:read"))
    def openapi() -> dict[str, Any]:
        """This API's OpenAPI document."""
        if app.openapi_schema is None:
            app.openapi_schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
        return app.openapi_schema

    app.add_middleware(RequestIdMiddleware)
    return app
