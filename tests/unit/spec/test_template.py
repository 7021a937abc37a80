"""The conveyor.yaml that `conveyor init` writes: valid in every variant, and faithful to the seeds."""

from __future__ import annotations

from itertools import combinations

import pytest

from conveyor.spec import Spec, load_spec_text, render_init
from conveyor.spec.types import Duration, Money, Percent

EXTRA_SETS = [set(c) for n in range(4) for c in combinations(["qa", "dr", "preview"], n)]


@pytest.mark.parametrize("extra", EXTRA_SETS, ids=lambda e: "+".join(sorted(e)) or "base")
def test_every_variant_validates(extra: set[str]) -> None:
    spec = load_spec_text(render_init("shop", extra))
    expected = ["development", *(["qa"] if "qa" in extra else []), "staging", "production"]
    expected += ["dr"] if "dr" in extra else []
    assert spec.pipeline_order() == expected
    assert list(spec.environments) == [*expected, *(["preview"] if "preview" in extra else [])]
    assert spec.project == "shop"


def test_the_template_is_commented_and_has_no_markers() -> None:
    text = render_init()
    assert "project: my-app" in text
    assert "#@" not in text and "{{" not in text
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    assert len(comments) >= 25


@pytest.mark.parametrize(
    ("project", "extra", "message"),
    [
        ("shop", {"prod"}, "unknown extra environment(s): prod; choose from qa, dr, preview"),
        ("shop", {"qa", "staging"}, "unknown extra environment(s): staging; choose from qa, dr, preview"),
        ("My Shop", set(), "'My Shop' is not a valid project name"),
    ],
)
def test_bad_arguments(project: str, extra: set[str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        render_init(project, extra)


@pytest.fixture(scope="module")
def spec() -> Spec:
    return load_spec_text(render_init("shop", {"qa", "dr", "preview"}))


def test_tiers_purpose_owner_and_data(spec: Spec) -> None:
    summary = {
        name: (env.tier, env.data.policy, bool(env.purpose and env.owner))
        for name, env in spec.environments.items()
    }
    assert summary == {
        "development": ("development", "synthetic", True),
        "qa": ("testing", "synthetic", True),
        "staging": ("staging", "masked", True),
        "production": ("production", "real", True),
        "dr": ("dr", "real", True),
        "preview": ("preview", "synthetic", True),
    }
    assert spec.environments["staging"].data.source == "production"


def test_scale_sla_and_budget(spec: Spec) -> None:
    rows = {}
    for name in ("development", "staging", "production"):
        env = spec.environments[name]
        autoscale = env.scale.autoscale
        rows[name] = (
            env.scale.expected_rps,
            (env.scale.instances.min, env.scale.instances.max),
            (autoscale.min, autoscale.max) if autoscale else None,
            env.uptime_sla,
            env.budget.monthly if env.budget else None,
        )
    assert rows == {
        "development": (100, (1, 2), None, None, Money(300)),
        "staging": (1000, (2, 3), (2, 3), Percent(95), Money(500)),
        "production": (10000, (4, 6), (2, 20), Percent("99.9"), Money(2000)),
    }


def test_production_slos(spec: Spec) -> None:
    slos = spec.environments["production"].slos
    assert (str(slos.availability), str(slos.latency.p99), str(slos.error_rate)) == ("99.9%", "200ms", "0.1%")


def test_who_may_deploy_and_approve(spec: Spec) -> None:
    envs = spec.environments
    assert envs["development"].access.deploy == ["developer", "qa", "release-manager"]
    assert envs["staging"].access.deploy == ["qa", "release-manager"]
    assert envs["production"].access.deploy == ["release-manager"]
    approvals = envs["production"].approvals
    assert (approvals.required, approvals.approver_roles, approvals.allow_self_approval) == (
        2,
        ["release-manager"],
        False,
    )
    assert approvals.expires_after == Duration.of(hours=24)
    assert envs["production"].access.approve == ["release-manager"]
    assert envs["development"].approvals.required == 0


def test_staging_promotes_from_main_through_the_gauntlet(spec: Spec) -> None:
    promotion = spec.environments["staging"].promotion
    assert (promotion.automatic, promotion.branch) == (True, "main")
    assert [gate.type for gate in promotion.gates] == [
        "command",
        "scan",
        "migration-rehearsal",
        "load",
        "chaos",
    ]
    load_gate = promotion.gates[3]
    assert load_gate.type == "load" and (load_gate.ramp_from, load_gate.multiplier) == (1, 5)


def test_production_blue_green_steps(spec: Spec) -> None:
    strategy = spec.environments["production"].strategy
    assert strategy.type == "bluegreen"
    assert [(str(s.weight), str(s.pause) if s.pause else None) for s in strategy.steps] == [
        ("1%", "5m"),
        ("10%", "10m"),
        ("50%", "15m"),
        ("100%", None),
    ]
    assert strategy.keep_old is not None
    assert (str(strategy.keep_old.hot), strategy.keep_old.standby) == ("1h", Duration.of(hours=24))
    assert strategy.analysis is not None and strategy.analysis.use_slos
    assert spec.environments["development"].strategy.type == "recreate"


def test_config_values_per_environment(spec: Spec) -> None:
    config = {name: spec.environments[name].config for name in ("development", "staging", "production")}
    assert config == {
        "development": {"LOG_LEVEL": "debug", "CACHE_ENABLED": True, "API_TIMEOUT": "30s", "DB_POOL_SIZE": 5},
        "staging": {"LOG_LEVEL": "info", "CACHE_ENABLED": True, "API_TIMEOUT": "10s", "DB_POOL_SIZE": 20},
        "production": {
            "LOG_LEVEL": "warn",
            "CACHE_ENABLED": True,
            "API_TIMEOUT": "5s",
            "DB_POOL_SIZE": 50,
            "ENABLE_METRICS": True,
            "ALERT_ON_ERRORS": True,
        },
    }


def test_secret_references_and_rotation(spec: Spec) -> None:
    secrets = spec.environments["production"].secrets
    assert {name: (ref.kind, str(ref.rotate_every)) for name, ref in secrets.items()} == {
        "POSTGRES_PASSWORD": ("database-password", "30d"),
        "JWT_SECRET": ("signing-key", "180d"),
        "API_KEY": ("api-key", "90d"),
    }
    assert "devpassword123" not in render_init("shop", {"qa", "dr"})


def test_resources_logs_alerts_and_recovery(spec: Spec) -> None:
    production = spec.environments["production"]
    assert production.resources.database is not None and production.resources.database.ha
    assert production.resources.cache is not None and production.resources.cache.engine == "redis"
    retention = {}
    for name in ("development", "staging", "production"):
        logs = spec.environments[name].logs
        assert logs is not None
        retention[name] = str(logs.retention)
    assert retention == {"development": "7d", "staging": "30d", "production": "2y"}
    alerts = production.alerts
    assert (alerts.critical, alerts.high, alerts.medium, alerts.low) == (
        "page",
        "ticket",
        "log",
        "weekly-report",
    )
    assert production.recovery is not None
    assert (str(production.recovery.rto), str(production.recovery.rpo)) == ("1h", "5m")
    assert production.recovery.failover_to == "dr"
    staging = spec.environments["staging"]
    assert staging.recovery is not None and staging.recovery.method == "restore-backup"
    assert staging.backups is not None and str(staging.backups.every) == "7d"


def test_without_dr_production_restores_from_backup() -> None:
    recovery = load_spec_text(render_init()).environments["production"].recovery
    assert recovery is not None and (recovery.method, recovery.failover_to) == ("restore-backup", None)


def test_windows_ports_previews_and_the_example_service(spec: Spec) -> None:
    production = spec.environments["production"]
    assert production.windows is not None and production.windows.allow[0].days == ["mon", "tue", "wed", "thu"]
    ports = [env.router.port for env in spec.environments.values() if env.router]
    assert len(ports) == len(set(ports)) == 5
    preview = spec.environments["preview"]
    assert preview.tier == "preview" and preview.ttl is not None and preview.router is None
    web = spec.services["web"]
    assert web.command == ["python", "app.py"] and web.port_env == "PORT"
    assert (web.health.path, str(web.health.interval), str(web.health.timeout)) == ("/healthz", "10s", "2s")
    assert list(web.config_schema) == [
        "LOG_LEVEL",
        "CACHE_ENABLED",
        "API_TIMEOUT",
        "DB_POOL_SIZE",
        "ENABLE_METRICS",
        "ALERT_ON_ERRORS",
    ]
    assert [stage.optional for stage in spec.pipeline.stages] == [True, True, False, False, False]
