"""Pure: an environment's resolved configuration as a .env file, JSON, or Terraform variables.

Secrets are never part of these (they live in the secret store, not in configuration); the values
are exactly what a release of the environment runs with.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Literal

from conveyor.spec.settings import ScalarValue

Format = Literal["dotenv", "json", "tfvars"]
FORMATS: tuple[str, ...] = ("dotenv", "json", "tfvars")
_PLAIN = re.compile(r"[A-Za-z0-9_./:@+,-]*")
_UNESCAPE = {"n": "\n", "r": "\r"}


def export(values: Mapping[str, ScalarValue], fmt: Format) -> str:
    """The values in `fmt`, keys sorted, ending with a newline."""
    if fmt == "json":
        return json.dumps(dict(sorted(values.items())), indent=2) + "\n"
    if fmt == "tfvars":
        return "".join(f"{key} = {_hcl(value)}\n" for key, value in sorted(values.items()))
    return "".join(f"{key}={_dotenv(value)}\n" for key, value in sorted(values.items()))


def _text(value: ScalarValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _dotenv(value: ScalarValue) -> str:
    text = _text(value)
    if _PLAIN.fullmatch(text):
        return text
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("$", "\\$")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )
    return f'"{escaped}"'


def _hcl(value: ScalarValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return repr(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("${", "$${")
    return f'"{escaped}"'


def parse_dotenv(text: str) -> dict[str, str]:
    """Read back what `export(..., "dotenv")` writes (for tests and `config diff` of files)."""
    out: dict[str, str] = {}
    for line in text.split("\n"):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, raw = line.partition("=")
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", lambda m: _UNESCAPE.get(m.group(1), m.group(1)), raw[1:-1], flags=re.S)
        out[key] = raw
    return out
