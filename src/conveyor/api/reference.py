"""Render docs/reference/api.md from the OpenAPI document: every route, its permission and purpose."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from fastapi.openapi.utils import get_openapi


def _openapi() -> dict[str, Any]:
    from conveyor.api.app import create_app
    from conveyor.settings import Settings
    from conveyor.store.db import Store
    from conveyor.store.migrate import upgrade

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'state.db'}"
        store = Store(url)
        upgrade(store)
        store.dispose()
        app = create_app(Settings(home=Path(tmp), database_url=url))
        return get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )


def render_reference(doc: dict[str, Any] | None = None) -> str:
    """Markdown: one table row per operation, grouped by tag."""
    doc = doc or _openapi()
    lines = [
        "# API reference",
        "",
        "Generated from the server's OpenAPI document (`python -m conveyor.api.reference`); the live",
        "document is at `GET /openapi.json` (needs `status:read`). Every route but `/healthz` and",
        "`/readyz` needs `Authorization: Bearer <token>`. Errors are RFC 9457 `application/problem+json`",
        "with `type`, `title`, `status`, `detail`, a `hint` (the fix) and the `request_id`; a 403 names the",
        "missing `permission`; an invalid conveyor.yaml (422) carries `file`, `line`, `column` and `errors`.",
        "",
    ]
    groups: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            groups.setdefault((op.get("tags") or ["other"])[0], []).append((method.upper(), path, op))
    for tag, ops in groups.items():
        lines += [f"## {tag}", "", "| method | path | permission | what it does |", "|---|---|---|---|"]
        for method, path, op in ops:
            summary = (op.get("description") or op.get("summary") or "").splitlines()[0]
            lines.append(f"| {method} | `{path}` | `{op.get('x-permission', '?')}` | {summary} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render_reference())
