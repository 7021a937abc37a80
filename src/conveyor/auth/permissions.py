"""The permission vocabulary and the built-in roles; pure, imported by spec validation and the API.

Global permissions guard server-wide routes. Environment actions are granted per environment in
conveyor.yaml (`environments.<name>.access.<action>: [roles]`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

ALL = "*"

# Global permissions: what each one lets a caller do.
GLOBAL_PERMISSIONS: dict[str, str] = {
    "status:read": "read server status, version and your own identity",
    "spec:read": "read the applied conveyor.yaml, its revisions and diffs",
    "spec:plan": "ask what applying a conveyor.yaml would change",
    "spec:apply": "apply a conveyor.yaml as a new spec revision",
    "environments:read": "list and show environments",
    "users:read": "list users",
    "users:manage": "add, change and disable users",
    "tokens:own": "create, list and revoke your own API tokens",
    "tokens:manage": "create, list and revoke any user's API tokens",
    "audit:read": "list audit events",
    "audit:verify": "verify the audit hash chain",
    "audit:export": "export the audit log as JSON Lines",
    "artifacts:read": "list and show registered artifacts",
    "artifacts:write": "register artifacts (CI does this once per build)",
    "runtime:read": "see instances, logs and live traffic of environments",
    "promotions:read": "list promotions and see their gates, approvals and explanations",
    "promotions:override": "release a promotion during a freeze or outside its change window (admin)",
    "secrets:rewrap": "re-wrap every secret's data key under the server's current master key (admin)",
}

# Actions granted per environment by `access` in conveyor.yaml.
ENVIRONMENT_ACTIONS: dict[str, str] = {
    "deploy": "deploy or promote an artifact into the environment",
    "approve": "approve or reject promotions into the environment",
    "rollout": "pause, resume, promote or abort a rollout in the environment",
    "config": "change runtime configuration and feature flags",
    "secrets": "write, rotate and delete secrets",
}

BUILTIN_ROLES: tuple[str, ...] = ("viewer", "developer", "qa", "release-manager", "admin")

_VIEWER = (
    "status:read",
    "spec:read",
    "environments:read",
    "audit:read",
    "tokens:own",
    "artifacts:read",
    "runtime:read",
    "promotions:read",
)

# Defaults; conveyor.yaml's `roles:` may replace a built-in role's permissions or add roles.
DEFAULT_ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset(_VIEWER),
    "developer": frozenset((*_VIEWER, "spec:plan", "artifacts:write")),
    "qa": frozenset((*_VIEWER, "spec:plan")),
    "release-manager": frozenset(
        (
            *_VIEWER,
            "spec:plan",
            "spec:apply",
            "users:read",
            "audit:verify",
            "audit:export",
            "artifacts:write",
        )
    ),
    "admin": frozenset((ALL,)),
}


def is_known_permission(name: str) -> bool:
    """True for a global permission name or the wildcard."""
    return name == ALL or name in GLOBAL_PERMISSIONS


def role_permissions(
    overrides: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, frozenset[str]]:
    """Built-in roles with conveyor.yaml's `roles:` applied; admin always keeps every permission."""
    table = dict(DEFAULT_ROLE_PERMISSIONS)
    for role, perms in (overrides or {}).items():
        table[role] = frozenset(perms)
    table["admin"] = frozenset((ALL,))  # the admin can never be locked out by a spec
    return table


def has_permission(table: Mapping[str, frozenset[str]], role: str, permission: str) -> bool:
    """Whether `role` holds `permission` in `table` (unknown roles hold nothing)."""
    granted = table.get(role, frozenset())
    return ALL in granted or permission in granted


def may_act_on_environment(role: str, action: str, allowed_roles: Iterable[str] | None) -> bool:
    """Whether `role` may perform an environment `action` given the roles the environment allows."""
    return role == "admin" or role in set(allowed_roles or ())
