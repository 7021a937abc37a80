"""The commented conveyor.yaml that `conveyor init` writes, with optional QA, DR and preview environments.

The template lives in `templates/conveyor.yaml`. A line ending in `#@qa` is kept only with the
qa extra, `#@!dr` only without the dr extra; `#@if qa` … `#@end` wraps a whole block.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib.resources import files

from conveyor.spec.fields import NAME_RULE, is_valid_name

EXTRAS: tuple[str, ...] = ("qa", "dr", "preview")
_LINE_MARK = re.compile(r"\s*#@(!?)(\w+)\s*$")
_BLOCK_START = re.compile(r"#@if (\w+)\s*$")
_BLOCK_END = "#@end"


def template_text() -> str:
    """The raw template, markers included."""
    return files("conveyor.spec").joinpath("templates/conveyor.yaml").read_text(encoding="utf-8")


def render_init(project: str = "my-app", extra: Iterable[str] = frozenset()) -> str:
    """The starting conveyor.yaml for `project`; `extra` may add "qa", "dr" and/or a "preview" template."""
    chosen = set(extra)
    unknown = sorted(chosen - set(EXTRAS))
    if unknown:
        raise ValueError(
            f"unknown extra environment(s): {', '.join(unknown)}; choose from {', '.join(EXTRAS)}"
        )
    if not is_valid_name(project):
        raise ValueError(f"'{project}' is not a valid project name: {NAME_RULE}")
    lines: list[str] = []
    skipping: str | None = None
    for line in template_text().splitlines():
        block = _BLOCK_START.fullmatch(line)
        if block:
            skipping = None if block.group(1) in chosen else block.group(1)
            continue
        if line.strip() == _BLOCK_END:
            skipping = None
            continue
        if skipping:
            continue
        mark = _LINE_MARK.search(line)
        if mark:
            negated, name = mark.group(1) == "!", mark.group(2)
            if (name in chosen) == negated:
                continue
            line = line[: mark.start()]
        lines.append(line)
    return "\n".join(lines).replace("{{project}}", project) + "\n"
