"""Shared CLI plumbing: the per-invocation context, the API client, and relative time parsing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import typer

from conveyor.cli.client import Client, api_token, server_url
from conveyor.clock import isoformat
from conveyor.errors import ClientError
from conveyor.settings import Settings, load_settings


@dataclass
class CliContext:
    settings: Settings
    url: str | None


def cli_context(ctx: typer.Context) -> CliContext:
    """The context the root callback stored (settings and --url)."""
    obj = ctx.find_root().obj
    if not isinstance(obj, CliContext):
        obj = CliContext(load_settings(), None)
    return obj


@contextmanager
def api(ctx: typer.Context, timeout: float = 30.0) -> Iterator[Client]:
    """An API client for the server this invocation talks to; long requests (dumps, clones) pass a
    longer `timeout`."""
    cc = cli_context(ctx)
    client = Client(server_url(cc.settings, cc.url), api_token(cc.settings), timeout=timeout)
    try:
        yield client
    finally:
        client.close()


_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str | None, now: datetime | None = None) -> str | None:
    """`30m`, `2h`, `7d` (ago) or an ISO 8601 time, as the API's ISO form."""
    if value is None:
        return None
    match = _RELATIVE.match(value.strip())
    if match:
        delta = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return isoformat((now or datetime.now(UTC)) - delta)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ClientError(
            f"'{value}' is neither a relative time nor an ISO 8601 time",
            hint="use e.g. 30m, 2h, 7d, 2026-11-25 or 2026-11-25T10:00:00Z",
        ) from None
    return isoformat(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))
