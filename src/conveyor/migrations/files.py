"""Pure: a service's migration files as they ship in its artifact, named, ordered and checksummed.

A migration is `NNNN_name.sql`; an optional `NNNN_name.down.sql` beside it is its declared way back
(the rehearsal gate tests it). Versions order the files; the checksum is the SHA-256 of the file's
bytes, so any edit to an applied file is seen (ADR 0014).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from conveyor.errors import InvalidRequest

NAME_RULE = "name each file NNNN_description.sql (digits, '_', then lower-case letters, digits and '_')"
_FILE = re.compile(r"^(?P<version>\d{1,9})_(?P<name>[a-z0-9_]+?)(?P<down>\.down)?\.sql$")


@dataclass(frozen=True)
class Migration:
    """One forward migration, with its declared way back if it has one."""

    version: int
    name: str
    sql: str
    checksum: str
    down: str | None = None

    @property
    def id(self) -> str:
        """`0003_add_account_id`: what the applied-migrations table records."""
        return f"{self.version:04d}_{self.name}"

    @property
    def file(self) -> str:
        return f"{self.id}.sql"


class MigrationFilesInvalid(InvalidRequest):
    """The artifact's migration directory holds files Conveyor cannot order or read."""

    title = "Migration files invalid"
    slug = "migration-files-invalid"


def checksum(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_files(files: Mapping[str, bytes], where: str = "the migrations directory") -> list[Migration]:
    """The migrations in `files` (file name → bytes), ordered by version; every mistake named at once."""
    ups: dict[int, tuple[str, bytes]] = {}
    downs: dict[int, tuple[str, bytes]] = {}
    problems: list[str] = []
    for file_name in sorted(files):
        match = _FILE.match(file_name)
        if match is None:
            if file_name.endswith(".sql"):
                problems.append(f"{file_name}: not a migration name")
            continue  # a README or a helper script beside the migrations is fine
        version = int(match["version"])
        into = downs if match["down"] else ups
        if version in into:
            problems.append(f"{file_name}: version {version} is also {into[version][0]}")
            continue
        into[version] = (file_name, files[file_name])
    for version, (file_name, _) in sorted(downs.items()):
        up = ups.get(version)
        if up is None:
            problems.append(f"{file_name}: no forward migration {version:04d}_….sql beside it")
        elif up[0].removesuffix(".sql") != file_name.removesuffix(".down.sql"):
            problems.append(f"{file_name}: its name differs from {up[0]}")
    migrations = []
    for version, (file_name, data) in sorted(ups.items()):
        text = _text(file_name, data, problems)
        down = downs.get(version)
        down_text = _text(down[0], down[1], problems) if down is not None else None
        match = _FILE.match(file_name)
        assert match is not None
        migrations.append(Migration(version, match["name"], text, checksum(data), down_text))
    if problems:
        raise MigrationFilesInvalid(f"{where}: " + "; ".join(problems), hint=NAME_RULE)
    return migrations


def _text(file_name: str, data: bytes, problems: list[str]) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(f"{file_name}: not UTF-8 text (byte {exc.start})")
        return ""
