"""The agent writes an environment's flagd document where its instances look, and nothing restarts for it."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from conveyor.errors import InvalidRequest
from conveyor.runtime.desired import FULL_WEIGHT, EnvironmentDesired, VersionDesired
from conveyor.runtime.local.agent import Agent

DOC = {"$schema": "https://flagd.dev/schema/v0/flags.json", "flags": {}}
ON = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}


def _desired() -> EnvironmentDesired:
    version = VersionDesired("1.0.0", "sha256:" + "a" * 64, "/nowhere", 1, FULL_WEIGHT)
    return EnvironmentDesired("staging", "web", ("python", "app.py"), (version,), env={"LOG_LEVEL": "warn"})


def test_instances_are_told_where_the_flags_file_is(tmp_path: Path) -> None:
    agent = Agent(tmp_path)
    desired = _desired()
    env = agent._instance_env(desired, desired.versions[0])
    path = str((tmp_path / "agent" / "flags" / "staging.flagd.json").absolute())
    assert env["FLAGD_OFFLINE_FLAG_SOURCE_PATH"] == env["CONVEYOR_FLAGS_FILE"] == path
    assert env["LOG_LEVEL"] == "warn"


def test_a_new_document_replaces_the_file_and_leaves_instance_environments_alone(tmp_path: Path) -> None:
    agent = Agent(tmp_path)
    desired = _desired()
    before = agent._instance_env(desired, desired.versions[0])
    first = agent.put_flags("staging", DOC)
    second = agent.put_flags("staging", {**DOC, "flags": {"beta": ON}})
    path = Path(second["path"])
    assert json.loads(path.read_text())["flags"] == {"beta": ON}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first["sha256"] != second["sha256"] and second["flags"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["staging.flagd.json"]  # no temp file left
    assert agent._instance_env(desired, desired.versions[0]) == before  # so the supervisor restarts nothing


@pytest.mark.parametrize(
    ("environment", "document", "message"),
    [
        ("../etc", DOC, "not an environment name"),
        ("Staging", DOC, "not an environment name"),
        ("staging", {"flag": {}}, "needs a flags object"),
    ],
)
def test_what_is_not_an_environment_or_a_flagd_document_is_refused(
    tmp_path: Path, environment: str, document: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        Agent(tmp_path).put_flags(environment, document)
    assert not (tmp_path / "agent" / "flags").exists()
