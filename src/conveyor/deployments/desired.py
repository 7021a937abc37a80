"""Pure: turn an applied spec, an environment and an artifact into the runtime's desired state."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from conveyor.errors import InvalidRequest, NotFound
from conveyor.runtime.desired import FULL_WEIGHT, EnvironmentDesired, HealthPolicy, VersionDesired
from conveyor.spec import Spec


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def instance_count(instances: Any) -> int:
    """How many instances to run: a fixed number, or the minimum of a range."""
    return int(getattr(instances, "min", instances))


def config_env(spec: Spec, environment: str) -> dict[str, str]:
    """The environment's configuration as environment variables (values as text)."""
    return {key: _env_value(value) for key, value in spec.environments[environment].config.items()}


def config_sha256(env: dict[str, str], secrets: dict[str, str] | None = None) -> str:
    """Hash of the resolved configuration a release runs with, its secrets' references included.

    A rotated secret is a new reference, so it changes the hash approvals bind to (ADR 0010).
    """
    content: Any = {"env": env, "secrets": secrets} if secrets else env
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def recreate(
    spec: Spec,
    environment: str,
    service: str,
    version: str,
    digest: str,
    bundle_path: str,
    config: dict[str, str] | None = None,
    secrets: dict[str, str] | None = None,
) -> EnvironmentDesired:
    """Desired state that runs only `version` of `service`, with all traffic, in `environment`.

    `config` and `secrets` are what conveyor.config.service.release_config resolves (without them,
    the environment's own values and no secrets).
    """
    if environment not in spec.environments:
        raise NotFound(f"environment '{environment}' is not in the applied conveyor.yaml")
    if service not in spec.services:
        raise NotFound(f"service '{service}' is not in the applied conveyor.yaml")
    env = spec.environments[environment]
    svc = spec.services[service]
    if svc.command is None:
        raise InvalidRequest(
            f"service '{service}' has no command, so the local runtime cannot start it",
            hint="give it `command:` in conveyor.yaml (an `image:` needs the Kubernetes runtime)",
        )
    health = svc.health
    return EnvironmentDesired(
        environment=environment,
        service=service,
        command=tuple(svc.command),
        versions=(
            VersionDesired(
                version=version,
                digest=digest,
                bundle_path=bundle_path,
                instances=max(1, instance_count(env.scale.instances)),
                weight_bp=FULL_WEIGHT,
            ),
        ),
        env=config_env(spec, environment) if config is None else config,
        health=HealthPolicy(
            path=health.path,
            interval=health.interval.seconds,
            timeout=health.timeout.seconds,
            healthy_threshold=health.healthy_threshold,
            unhealthy_threshold=health.unhealthy_threshold,
        ),
        router_port=env.router.port if env.router else None,
        port_env=svc.port_env,
        secrets=dict(secrets or {}),
    )
