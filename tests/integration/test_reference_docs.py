"""The generated reference pages match the code (regenerate with `make docs`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conveyor.api.reference import render_reference

ROOT = Path(__file__).resolve().parents[2]


def test_api_reference_is_current() -> None:
    assert (ROOT / "docs/reference/api.md").read_text() == render_reference(), "run `make docs`"


def test_cli_reference_is_current(tmp_path: Path) -> None:
    out = tmp_path / "cli.md"
    typer = Path(sys.executable).parent / "typer"
    subprocess.run(
        [str(typer), "conveyor.cli.main", "utils", "docs", "--name", "conveyor", "--output", str(out)],
        check=True,
        capture_output=True,
    )
    assert (ROOT / "docs/reference/cli.md").read_text() == out.read_text(), "run `make docs`"
