"""Checks that span the whole file: pipeline order, self-references, router ports, what services need."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.spec.fields import Issue, did_you_mean
from conveyor.spec.vocabulary import LIVE_TIERS, TIER_RANK

if TYPE_CHECKING:
    from conveyor.spec.models import Spec


def spec_issues(spec: Spec) -> list[Issue]:
    """Every cross-environment problem of an otherwise well-formed spec."""
    return [
        *_pipeline_issues(spec),
        *_self_references(spec),
        *_port_clashes(spec),
        *_service_needs(spec),
        *_secret_sharing(spec),
        *_database_passwords(spec),
        *_local_databases(spec),
        *_cache_namespaces(spec),
        *_signature_needs(spec),
        *_data_declarations(spec),
    ]


def _pipeline_issues(spec: Spec) -> list[Issue]:
    issues: list[Issue] = []
    environments = spec.environments
    seen: set[str] = set()
    highest: tuple[int, str, str] | None = None
    if not spec.pipeline.stages:
        return [
            Issue(
                ("pipeline", "stages"),
                "the pipeline has no stages",
                "list the environments an artifact moves through, e.g. [development, staging, production]",
            )
        ]
    for index, stage in enumerate(spec.pipeline.stages):
        name, where = stage.environment, ("pipeline", "stages", index)
        environment = environments.get(name)
        if environment is None:
            issues.append(
                Issue(
                    where, f"pipeline stage '{name}' is not an environment", did_you_mean(name, environments)
                )
            )
            continue
        if name in seen:
            issues.append(
                Issue(where, f"environment '{name}' appears twice in the pipeline", "list each stage once")
            )
        seen.add(name)
        if environment.is_preview:
            issues.append(
                Issue(
                    where,
                    f"'{name}' is a preview environment, not a pipeline stage",
                    "previews are created per pull request; remove it from pipeline.stages",
                )
            )
            continue
        rank = TIER_RANK[environment.tier]
        if highest is not None and rank < highest[0]:
            issues.append(
                Issue(
                    where,
                    f"stage '{name}' ({environment.tier}) comes after '{highest[1]}' ({highest[2]})",
                    "order stages from development towards production; dr comes last",
                )
            )
        if highest is None or rank > highest[0]:
            highest = (rank, name, environment.tier)
    for name, environment in environments.items():
        if not environment.is_preview and name not in seen:
            issues.append(
                Issue(
                    ("environments", name),
                    f"environment '{name}' is not in the pipeline",
                    "add it to pipeline.stages (with optional: true if releases may skip it), "
                    "or make it tier: preview",
                    at_key=True,
                )
            )
    first = spec.pipeline.stages[0].environment
    if first in environments:
        for index, gate in enumerate(environments[first].promotion.gates):
            if gate.type == "previous-stage":
                issues.append(
                    Issue(
                        ("environments", first, "promotion", "gates", index),
                        f"'{first}' is the first pipeline stage, so it has no previous stage",
                        "remove this previous-stage gate",
                    )
                )
    return issues


def _self_references(spec: Spec) -> list[Issue]:
    issues: list[Issue] = []
    for name, environment in spec.environments.items():
        if environment.data.source == name:
            issues.append(
                Issue(
                    ("environments", name, "data", "source"),
                    "an environment cannot copy its data from itself",
                    "name another environment, e.g. production",
                )
            )
        if environment.recovery is not None and environment.recovery.failover_to == name:
            issues.append(
                Issue(
                    ("environments", name, "recovery", "failover_to"),
                    "an environment cannot fail over to itself",
                    "name a standby environment, usually of tier dr",
                )
            )
    return issues


def _port_clashes(spec: Spec) -> list[Issue]:
    issues: list[Issue] = []
    owners: dict[int, str] = {}
    for name, environment in spec.environments.items():
        if environment.router is None:
            continue
        port = environment.router.port
        if port in owners:
            issues.append(
                Issue(
                    ("environments", name, "router", "port"),
                    f"router port {port} is already used by environment '{owners[port]}'",
                    "give each environment its own port",
                )
            )
        else:
            owners[port] = name
    return issues


def _database_passwords(spec: Spec) -> list[Issue]:
    """A PostgreSQL database's password secret is declared in its environment, as a database-password."""
    issues: list[Issue] = []
    for env_name, environment in spec.environments.items():
        database = environment.resources.database
        if database is None or database.engine != "postgres":
            continue
        name = database.password_secret
        ref = environment.secrets.get(name)
        where = ("environments", env_name, "resources", "database", "password_secret")
        if ref is None:
            issues.append(
                Issue(
                    where,
                    f"secret '{name}' is not declared in {env_name}",
                    f"add {name}: {{kind: database-password}} under secrets",
                )
            )
        elif ref.kind != "database-password" or ref.from_environment is not None:
            issues.append(
                Issue(
                    where,
                    f"{name} must be {env_name}'s own database-password secret",
                    f"declare {name}: {{kind: database-password}} under environments.{env_name}.secrets",
                )
            )
    return issues


def _local_databases(spec: Spec) -> list[Issue]:
    """A SQLite file lives on the server's disk: for local development, never production or dr."""
    issues: list[Issue] = []
    for env_name, environment in spec.environments.items():
        database = environment.resources.database
        if database is not None and database.engine == "sqlite" and environment.tier in LIVE_TIERS:
            issues.append(
                Issue(
                    ("environments", env_name, "resources", "database", "engine"),
                    f"{env_name} is a {environment.tier} environment; a SQLite file is for local development",
                    "use engine: postgres",
                )
            )
    return issues


def _cache_namespaces(spec: Spec) -> list[Issue]:
    """An ACL namespace's password is its environment's own database-password, not the database's;
    two environments never share a database index on one server."""
    issues: list[Issue] = []
    owners: dict[tuple[str | None, int], str] = {}
    for env_name, environment in spec.environments.items():
        cache = environment.resources.cache
        if cache is None:
            continue
        where = ("environments", env_name, "resources", "cache")
        if cache.namespace == "db-index" and cache.db is not None:
            key = (cache.server, cache.db)
            if key in owners:
                issues.append(
                    Issue(
                        (*where, "db"),
                        f"database {cache.db} is already the cache of environment '{owners[key]}'",
                        "give each environment its own db",
                    )
                )
            owners.setdefault(key, env_name)
            continue
        name = cache.password_secret
        ref = environment.secrets.get(name)
        database = environment.resources.database
        # undeclared is allowed (a cache declared before Conveyor provisioned caches); provision asks
        if ref is not None and (ref.kind != "database-password" or ref.from_environment is not None):
            issues.append(
                Issue(
                    (*where, "password_secret"),
                    f"{name} must be {env_name}'s own database-password secret",
                    f"declare {name}: {{kind: database-password}} under environments.{env_name}.secrets",
                )
            )
        elif database is not None and database.engine == "postgres" and database.password_secret == name:
            issues.append(
                Issue(
                    (*where, "password_secret"),
                    f"{name} is already the database's password",
                    "give the cache its own secret, e.g. REDIS_PASSWORD",
                )
            )
    return issues


def _secret_sharing(spec: Spec) -> list[Issue]:
    """A secret used from another environment must be shared by it; live secrets stay in live tiers."""
    issues: list[Issue] = []
    for env_name, environment in spec.environments.items():
        for secret, ref in environment.secrets.items():
            where = ("environments", env_name, "secrets", secret)
            for other in ref.share_with:
                target = spec.environments.get(other)
                if target is None:
                    issues.append(
                        Issue(
                            (*where, "share_with"),
                            f"environment '{other}' is not declared",
                            did_you_mean(other, spec.environments),
                        )
                    )
                elif environment.tier in LIVE_TIERS and target.tier not in LIVE_TIERS:
                    issues.append(
                        Issue(
                            (*where, "share_with"),
                            f"{env_name} is a {environment.tier} environment; its secrets never leave "
                            f"production tiers, and '{other}' is {target.tier}",
                            f"give {other} its own {secret} with `conveyor secret set {other} {secret}`",
                        )
                    )
            source_name = ref.from_environment
            if source_name is None:
                continue
            source = spec.environments.get(source_name)
            if source is None or source_name == env_name:
                hint = (
                    did_you_mean(source_name, spec.environments)
                    if source is None
                    else "name another environment"
                )
                issues.append(
                    Issue((*where, "from_environment"), f"'{source_name}' cannot supply {secret}", hint)
                )
            elif secret not in source.secrets or env_name not in source.secrets[secret].share_with:
                issues.append(
                    Issue(
                        (*where, "from_environment"),
                        f"{source_name} does not share {secret} with {env_name}",
                        f"add {env_name} to environments.{source_name}.secrets.{secret}.share_with "
                        "(secrets are never shared by default)",
                    )
                )
    return issues


def _service_needs(spec: Spec) -> list[Issue]:
    issues: list[Issue] = []
    for service_name, service in spec.services.items():
        for env_name, environment in spec.environments.items():
            for secret in service.secrets:
                if secret not in environment.secrets:
                    issues.append(
                        Issue(
                            ("environments", env_name, "secrets"),
                            f"service '{service_name}' needs secret '{secret}', which is not declared here",
                            f"add {secret} under secrets (a reference only; "
                            "set its value with `conveyor secret set`)",
                            at_key=True,
                        )
                    )
            for key, setting in service.config_schema.items():
                if key in environment.config:
                    problem = setting.problem_with(environment.config[key])
                    if problem:
                        issues.append(
                            Issue(
                                ("environments", env_name, "config", key),
                                problem,
                                f"service '{service_name}' declares {key} as {setting.type}",
                            )
                        )
                elif setting.required:
                    issues.append(
                        Issue(
                            ("environments", env_name, "config"),
                            f"service '{service_name}' requires config {key}, which is not set here",
                            f"add {key} under config",
                            at_key=True,
                        )
                    )
    return issues


def _signature_needs(spec: Spec) -> list[Issue]:
    if spec.signing.trusted_keys:
        return []
    return [
        Issue(
            ("environments", name, "promotion", "require_signature"),
            f"environment '{name}' requires signed artifacts, but signing.trusted_keys lists no key",
            "add a public key under signing.trusted_keys (`conveyor artifact keygen` makes a pair), "
            "or set require_signature: false",
        )
        for name, environment in spec.environments.items()
        if environment.promotion.require_signature
    ]


def _data_declarations(spec: Spec) -> list[Issue]:
    """Services share each environment's database: two services may not rule one column differently."""
    issues: list[Issue] = []
    owners: dict[str, tuple[str, object]] = {}
    for service_name, service in spec.services.items():
        for column, rule in service.data.masking.items():
            if column in owners and owners[column][1] != rule:
                issues.append(
                    Issue(
                        ("services", service_name, "data", "masking", column),
                        f"{column} is masked differently by services "
                        f"'{owners[column][0]}' and '{service_name}'",
                        "give the column one rule, in one service",
                    )
                )
            owners.setdefault(column, (service_name, rule))
    return issues
