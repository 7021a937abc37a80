"""Pure checks on artifact versions (Semantic Versioning 2.0.0)."""

from __future__ import annotations

import re

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


def semver_problem(version: str) -> str | None:
    """None when `version` is valid SemVer, else what is wrong with it and the fix."""
    if _SEMVER.match(version):
        return None
    if version[:1] in ("v", "V") and _SEMVER.match(version[1:]):
        return f"'{version}' has a leading '{version[0]}': register it as '{version[1:]}'"
    return f"'{version}' is not a semantic version: use MAJOR.MINOR.PATCH, e.g. 2.1.0 or 2.1.0-rc.1"
