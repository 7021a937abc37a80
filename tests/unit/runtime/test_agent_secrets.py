"""The agent takes secret values beside a desired state, gives them to instances, and masks them in output."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from conveyor.errors import InvalidRequest
from conveyor.runtime.desired import FULL_WEIGHT, EnvironmentDesired, VersionDesired
from conveyor.runtime.local.agent import Agent


def _desired(secrets: dict[str, str], stable_secrets: dict[str, str] | None = None) -> EnvironmentDesired:
    versions = [VersionDesired("1.1.0", "sha256:" + "b" * 64, "/nowhere", 1, FULL_WEIGHT)]
    if stable_secrets is not None:
        versions.insert(
            0, VersionDesired("1.0.0", "sha256:" + "a" * 64, "/nowhere", 1, 0, secrets=stable_secrets)
        )
    return EnvironmentDesired(
        "production", "web", ("python", "app.py"), tuple(versions), env={"LOG_LEVEL": "warn"}, secrets=secrets
    )


def test_a_desired_state_naming_secrets_without_their_values_is_refused(tmp_path: Path) -> None:
    agent = Agent(tmp_path)
    with pytest.raises(
        InvalidRequest, match="names secrets whose values were not sent: production/API_KEY@2"
    ):
        asyncio.run(agent.put(_desired({"API_KEY": "production/API_KEY@2"})))
    assert agent.desired == {} and not (tmp_path / "agent" / "desired.json").exists()


def test_each_version_gets_its_own_secret_values(tmp_path: Path) -> None:
    agent = Agent(tmp_path)
    agent.secret_values = {"production/API_KEY@1": "old-value", "production/API_KEY@2": "new-value"}
    desired = _desired(
        {"API_KEY": "production/API_KEY@2"}, stable_secrets={"API_KEY": "production/API_KEY@1"}
    )
    stable, new = desired.versions
    assert agent._instance_env(desired, stable)["API_KEY"] == "old-value"
    env = agent._instance_env(desired, new)
    assert env["API_KEY"] == "new-value" and env["LOG_LEVEL"] == "warn"
    assert desired.secret_refs() == {"production/API_KEY@1", "production/API_KEY@2"}
    assert "new-value" not in str(desired.to_json())


def test_instance_output_never_shows_a_value(tmp_path: Path) -> None:
    agent = Agent(tmp_path)
    agent.secret_values = {"production/API_KEY@2": "sk_live_abcdef", "production/X@1": "abc"}
    assert agent.redact("connecting with key sk_live_abcdef to abc") == "connecting with key *** to abc"
    assert agent._redacted({"output_tail": ["key=sk_live_abcdef"]})["output_tail"] == ["key=***"]


def test_round_trip_of_secret_references_through_json() -> None:
    desired = _desired(
        {"API_KEY": "production/API_KEY@2"}, stable_secrets={"API_KEY": "production/API_KEY@1"}
    )
    again = EnvironmentDesired.from_json(desired.to_json())
    assert again == desired and again.versions[0].secrets == {"API_KEY": "production/API_KEY@1"}
