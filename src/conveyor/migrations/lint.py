"""squawk edge: lint pending migration files before anything runs (ADR 0014).

squawk (squawk-cli, installed from the lock file) knows PostgreSQL's locking hazards. Its rules
about dropping, renaming and retyping are left to Conveyor's own expand/contract check, which knows
which versions still need the old shape; its timeout rules are left to the runner, which sets both
timeouts itself. `prefer-*` rules are advice and are reported without refusing; every other finding
refuses the migration unless the service lists the rule under `migrations.lint_exclude`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import ConveyorError
from conveyor.migrations.files import Migration

CHECKED_ELSEWHERE = (
    "ban-drop-column",
    "ban-drop-table",
    "renaming-column",
    "renaming-table",
    "changing-column-type",
    "adding-required-field",
    "require-timeout-settings",
    "require-lock-timeout",
    "require-statement-timeout",
    "prefer-robust-stmts",
)


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    rule: str
    message: str
    help: str | None

    @property
    def refuses(self) -> bool:
        return not self.rule.startswith("prefer-")

    def render(self) -> str:
        tail = f" ({self.help})" if self.help else ""
        return f"{self.file}, line {self.line}: {self.message}{tail} [squawk {self.rule}]"

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "rule": self.rule,
            "message": self.message,
            "help": self.help,
            "refuses": self.refuses,
        }


class LintUnavailable(ConveyorError):
    status = 503
    title = "Migration lint unavailable"
    slug = "migration-lint-unavailable"


def squawk_binary() -> str:
    beside = Path(sys.executable).parent / "squawk"
    found = str(beside) if beside.exists() else shutil.which("squawk")
    if found is None:
        raise LintUnavailable(
            "squawk is not installed, so pending migrations cannot be linted",
            hint="`make` installs it from requirements.lock (squawk-cli)",
        )
    return found


def lint(pending: Sequence[Migration], exclude: Iterable[str] = ()) -> list[Finding]:
    """squawk's findings on `pending` (file names as shipped, lines 1-based)."""
    if not pending:
        return []
    excluded = sorted({*CHECKED_ELSEWHERE, *exclude})
    with tempfile.TemporaryDirectory(prefix="conveyor-lint-") as tmp:
        paths = []
        for migration in pending:
            path = Path(tmp) / migration.file
            path.write_text(migration.sql)
            paths.append(str(path))
        try:
            done = subprocess.run(
                [squawk_binary(), "--reporter", "json", f"--exclude={','.join(excluded)}", *paths],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LintUnavailable(f"squawk did not run: {exc}", hint="check the squawk-cli install") from None
    if done.returncode not in (0, 1):
        raise LintUnavailable(
            f"squawk failed (exit {done.returncode}): {done.stderr.strip()[:300]}",
            hint="run squawk on the file yourself to see why",
        )
    try:
        reported = json.loads(done.stdout or "[]")
    except json.JSONDecodeError:
        raise LintUnavailable(f"squawk printed no JSON: {done.stdout[:200]!r}", hint="check squawk") from None
    return [
        Finding(
            Path(item["file"]).name,
            int(item.get("line", 0)) + 1,
            str(item.get("rule_name", "?")),
            str(item.get("message", "")),
            item.get("help"),
        )
        for item in reported
    ]
