"""The suite's CLI launcher gives what a fresh `python -m conveyor` gives: output, errors, exit status."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Cli

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("promote", "--help"),
        ("no-such-command",),
        ("promote", "web"),  # a usage error: exit 2
        ("status",),  # no server: a clear error, exit 1
        ("apply", "--file", "missing.yaml"),
    ],
)
def test_a_forked_command_is_indistinguishable_from_a_fresh_interpreter(
    args: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tests.conftest as conftest

    if conftest._FORK_SERVER is None:
        pytest.skip("CONVEYOR_TEST_CLI=spawn: every command runs in a fresh interpreter already")
    cli = Cli(tmp_path / "home" / ".conveyor")
    forked = cli(*args, input="")
    monkeypatch.setattr(conftest, "_FORK_SERVER", None)
    fresh = cli(*args, input="")
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
