"""squawk on pending migrations: real findings, 1-based lines, advice versus refusal, exclusions."""

from __future__ import annotations

import pytest

from conveyor.migrations.files import parse_files
from conveyor.migrations.lint import lint

pytestmark = pytest.mark.integration

FILES = {
    "0002_index.sql": b"-- a blocking index build\n\nCREATE INDEX users_email ON users (email);\n",
    "0003_table.sql": b"CREATE TABLE notes (id int PRIMARY KEY, body text);\n"
    b"ALTER TABLE users DROP COLUMN legacy;\n",  # Conveyor's own check decides drops, not squawk
}


def test_squawk_findings_name_file_line_and_rule() -> None:
    found = lint(parse_files(FILES))
    index = [f for f in found if f.rule == "require-concurrent-index-creation"]
    assert [(f.file, f.line, f.refuses) for f in index] == [("0002_index.sql", 3, True)]
    assert "concurrently" in (index[0].help or "").lower()
    advice = [f for f in found if f.file == "0003_table.sql"]
    assert advice and all(f.rule.startswith("prefer-") and not f.refuses for f in advice)
    assert not any(f.rule == "ban-drop-column" for f in found)
    assert "[squawk require-concurrent-index-creation]" in index[0].render()


def test_a_team_can_accept_a_rule() -> None:
    found = lint(parse_files(FILES), exclude=["require-concurrent-index-creation"])
    assert not any(f.refuses for f in found)
    assert lint([]) == []
