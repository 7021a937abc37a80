"""Paths of the third-party report fixtures in ../shared/fixtures (see its README)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ROOT

FIXTURES = ROOT.parent / "shared" / "fixtures"
SARIF = FIXTURES / "sarif"
JUNIT = FIXTURES / "junit"


def fixture(path: Path) -> bytes:
    """The bytes of a fixture file."""
    return path.read_bytes()
