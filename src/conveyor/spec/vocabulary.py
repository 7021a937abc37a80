"""The fixed words of conveyor.yaml: tiers, data policies, strategies, alert routes and the like."""

from __future__ import annotations

from typing import Literal, get_args

TierName = Literal["development", "testing", "staging", "production", "dr", "preview"]
TIERS: tuple[str, ...] = get_args(TierName)

# Position of a tier along a pipeline; a stage never comes before one of a lower rank.
TIER_RANK: dict[str, int] = {"development": 0, "testing": 1, "staging": 2, "production": 3, "dr": 4}
# Tiers that serve real users or stand in for them: real data allowed, never expire.
LIVE_TIERS: frozenset[str] = frozenset({"production", "dr"})

DataPolicyName = Literal["synthetic", "masked", "real"]
DATA_POLICIES: tuple[str, ...] = get_args(DataPolicyName)

StrategyName = Literal["recreate", "bluegreen", "canary"]
STRATEGIES: tuple[str, ...] = get_args(StrategyName)

AlertRoute = Literal["page", "ticket", "log", "weekly-report", "none"]
ALERT_ROUTES: tuple[str, ...] = get_args(AlertRoute)

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[str, ...] = get_args(Severity)

SecretKind = Literal[
    "database-password", "signing-key", "api-key", "password", "token", "certificate", "generic"
]
SECRET_KINDS: tuple[str, ...] = get_args(SecretKind)

DatabaseEngine = Literal["postgres", "sqlite"]
DATABASE_ENGINES: tuple[str, ...] = get_args(DatabaseEngine)

CacheEngine = Literal["redis"]
CACHE_ENGINES: tuple[str, ...] = get_args(CacheEngine)

CacheMode = Literal["single", "replicated", "cluster"]
CACHE_MODES: tuple[str, ...] = get_args(CacheMode)

CacheNamespace = Literal["acl", "db-index"]
CACHE_NAMESPACES: tuple[str, ...] = get_args(CacheNamespace)

RecoveryMethod = Literal["rebuild", "restore-backup", "failover"]
RECOVERY_METHODS: tuple[str, ...] = get_args(RecoveryMethod)

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = get_args(Weekday)

ConfigType = Literal["string", "integer", "number", "boolean", "duration"]
CONFIG_TYPES: tuple[str, ...] = get_args(ConfigType)

IntegrityCheck = Literal["counts", "checksums"]
INTEGRITY_CHECKS: tuple[str, ...] = get_args(IntegrityCheck)
