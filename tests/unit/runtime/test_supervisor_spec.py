"""What the supervisor accepts: instance specs and health checks, validated and compared by value."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from conveyor.errors import InvalidRequest
from conveyor.runtime.local.instance import HealthCheck, InstanceSpec, InstanceState, InstanceStatus


def _spec(**changes: object) -> InstanceSpec:
    fields: dict[str, object] = {
        "environment": "staging",
        "service": "shop",
        "version": "1.4.0-rc.1+g3f2a",
        "index": 2,
        "command": ("python", "app.py"),
        "workdir": Path("/srv/app"),
        "env": {"LOG_LEVEL": "info"},
    }
    fields.update(changes)
    return InstanceSpec(**fields)  # type: ignore[arg-type]


class TestInstanceSpec:
    def test_key_names_environment_service_version_and_index(self) -> None:
        assert _spec().key == "staging/shop/1.4.0-rc.1+g3f2a/2"

    def test_equal_specs_compare_and_hash_equal(self) -> None:
        assert _spec() == _spec(command=["python", "app.py"], workdir="/srv/app")
        assert hash(_spec()) == hash(_spec())
        assert len({_spec(), _spec()}) == 1

    @pytest.mark.parametrize(
        "change",
        [
            {"env": {"LOG_LEVEL": "debug"}},
            {"command": ("python", "other.py")},
            {"health": HealthCheck(interval=5)},
        ],
        ids=["env", "command", "health"],
    )
    def test_any_change_makes_a_different_spec(self, change: dict[str, object]) -> None:
        assert _spec(**change) != _spec()

    def test_env_is_copied_so_later_edits_do_not_leak_in(self) -> None:
        env = {"A": "1"}
        spec = _spec(env=env)
        env["A"] = "2"
        assert spec.env == {"A": "1"}

    @pytest.mark.parametrize(
        "change",
        [
            {"environment": "../etc"},
            {"service": "a/b"},
            {"version": ""},
            {"index": -1},
            {"command": ()},
            {"command": ("",)},
            {"port_env": "1PORT"},
        ],
        ids=[
            "environment-path",
            "service-slash",
            "empty-version",
            "negative-index",
            "no-command",
            "blank-program",
            "bad-port-env",
        ],
    )
    def test_unusable_specs_are_refused(self, change: dict[str, object]) -> None:
        with pytest.raises(InvalidRequest):
            _spec(**change)


class TestHealthCheck:
    def test_defaults_match_conveyor_yaml(self) -> None:
        check = HealthCheck()
        assert (check.path, check.interval, check.timeout) == ("/healthz", 10.0, 2.0)
        assert (check.healthy_threshold, check.unhealthy_threshold) == (1, 3)

    def test_unhealthy_instances_restart_after_three_times_interval_times_threshold(self) -> None:
        assert HealthCheck(interval=2, unhealthy_threshold=4).unhealthy_restart_after == 24
        assert HealthCheck(restart_after=5).unhealthy_restart_after == 5

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"path": "healthz"},
            {"interval": 0},
            {"timeout": -1},
            {"healthy_threshold": 0},
            {"restart_after": 0},
        ],
        ids=["relative-path", "zero-interval", "negative-timeout", "zero-threshold", "zero-restart-after"],
    )
    def test_nonsense_is_refused(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(InvalidRequest):
            HealthCheck(**kwargs)  # type: ignore[arg-type]


class TestInstanceStatus:
    def test_serialises_to_json_with_plain_strings(self) -> None:
        status = InstanceStatus(
            key="dev/shop/1.0.0/0",
            environment="dev",
            service="shop",
            version="1.0.0",
            index=0,
            pid=None,
            port=None,
            state=InstanceState.CRASH_LOOP,
            restarts=4,
            started_at=None,
            ready_since=None,
            last_exit_code=3,
            health_failures=0,
            output_tail=("boom",),
            reason="crash loop",
            log_path=Path("/logs/dev/shop-1.0.0-0.log"),
        )
        data = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(status).items()}
        assert json.loads(json.dumps(data))["state"] == "crash-loop"
