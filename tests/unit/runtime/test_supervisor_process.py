"""Process plumbing of the supervisor: child environments, ports, exit wording and the pid record file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conveyor.runtime.local.instance import InstanceSpec
from conveyor.runtime.local.instance_process import child_env, describe_exit, free_port
from conveyor.runtime.local.pidfile import ProcessRecord, read_records, start_ticks, write_records


def _spec(env: dict[str, str], port_env: str = "PORT") -> InstanceSpec:
    return InstanceSpec("qa", "shop", "2.1.0", 1, ("app",), Path("/srv"), env, port_env=port_env)


class TestChildEnv:
    def test_conveyor_variables_win_over_the_spec_and_the_agent(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PATH", "/usr/bin")
        env = child_env(_spec({"PORT": "1", "CONVEYOR_ENV": "prod", "LOG_LEVEL": "debug"}), 8123)
        assert env["PORT"] == "8123"
        assert env["CONVEYOR_ENV"] == "qa"
        assert env["CONVEYOR_VERSION"] == "2.1.0"
        assert env["CONVEYOR_INSTANCE"] == "qa/shop/2.1.0/1"
        assert env["LOG_LEVEL"] == "debug"
        assert env["PATH"] == "/usr/bin"

    def test_the_agents_own_secrets_are_not_inherited(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CONVEYOR_TOKEN", "agent-token")
        monkeypatch.setenv("CONVEYOR_DATABASE_URL", "postgresql://prod")
        env = child_env(_spec({}), 8123)
        assert "CONVEYOR_TOKEN" not in env and "CONVEYOR_DATABASE_URL" not in env

    def test_the_port_goes_where_the_service_reads_it(self) -> None:
        env = child_env(_spec({}, port_env="HTTP_PORT"), 9000)
        assert env["HTTP_PORT"] == "9000" and "PORT" not in env

    def test_a_spec_may_turn_python_buffering_back_on(self) -> None:
        assert child_env(_spec({}), 1)["PYTHONUNBUFFERED"] == "1"
        assert child_env(_spec({"PYTHONUNBUFFERED": ""}), 1)["PYTHONUNBUFFERED"] == ""


class TestPorts:
    def test_a_free_port_is_not_one_already_handed_out(self) -> None:
        first = free_port()
        assert free_port([first]) != first


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (0, "exited with code 0"),
        (3, "exited with code 3"),
        (-9, "killed by SIGKILL"),
        (None, "did not start"),
    ],
    ids=["clean", "error", "sigkill", "never-started"],
)
def test_exit_statuses_read_as_words(code: int | None, words: str) -> None:
    assert describe_exit(code) == words


class TestPidFile:
    def test_records_round_trip(self, tmp_path: Path) -> None:
        path = tmp_path / "state" / "instances.json"
        records = [ProcessRecord("dev/shop/1.0.0/0", 1234, 99), ProcessRecord("dev/shop/1.0.0/1", 1235, None)]
        write_records(path, records)
        assert read_records(path) == records
        assert [p.name for p in path.parent.iterdir()] == ["instances.json"]

    def test_missing_or_garbled_files_read_as_empty(self, tmp_path: Path) -> None:
        assert read_records(tmp_path / "none.json") == []
        garbled = tmp_path / "garbled.json"
        garbled.write_text('[{"pid": "x"}')
        assert read_records(garbled) == []

    def test_start_ticks_identify_a_live_process(self) -> None:
        mine = start_ticks(os.getpid())
        assert mine is not None and mine > 0
        assert start_ticks(os.getpid()) == mine
        assert start_ticks(2**22 + 12345) is None  # above pid_max: never a process
