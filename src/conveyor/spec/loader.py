"""Reads conveyor.yaml text or files into a validated Spec; every mistake becomes a positioned SpecProblem.

YAML is parsed with ruamel's round-trip loader, whose data remembers the line and column of each key
and value. A file with duplicate keys is parsed a second time as a node tree, to report every one.
"""

from __future__ import annotations

import os
import warnings
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, ReusedAnchorWarning, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode
from ruamel.yaml.reader import ReaderError

from conveyor.errors import SpecError, SpecProblem
from conveyor.spec.models import Spec, validate_spec
from conveyor.spec.problems import path_text

INIT_HINT = "run `conveyor init` to create one"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def load_spec_file(path: str | Path) -> Spec:
    """Read and validate a conveyor.yaml file; problems name the file as the caller wrote it."""
    shown = os.fspath(path)
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise SpecError([SpecProblem(shown, None, None, "", f"{shown} does not exist", INIT_HINT)]) from None
    except IsADirectoryError:
        raise SpecError(
            [
                SpecProblem(
                    shown,
                    None,
                    None,
                    "",
                    f"{shown} is a directory, not a file",
                    "point at the conveyor.yaml file",
                )
            ]
        ) from None
    except PermissionError:
        raise SpecError(
            [
                SpecProblem(
                    shown,
                    None,
                    None,
                    "",
                    f"{shown} cannot be read: permission denied",
                    "check its permissions",
                )
            ]
        ) from None
    except OSError as exc:
        raise SpecError(
            [SpecProblem(shown, None, None, "", f"{shown} cannot be read: {exc.strerror}")]
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(
            [SpecProblem(shown, line, None, "", f"{shown} is not UTF-8 text", "save the file as UTF-8")]
        ) from None
    return load_spec_text(text, shown)


def load_spec_text(text: str, filename: str = "conveyor.yaml") -> Spec:
    """Parse and validate conveyor.yaml text; raises SpecError listing every problem found."""
    data, duplicates = _parse(text, filename)
    if data is None:
        raise SpecError(
            [SpecProblem(filename, 1, 1, "", f"{filename} is empty", f"{INIT_HINT}, or add environments:")]
        )
    if not isinstance(data, dict):
        raise SpecError(
            [
                SpecProblem(
                    filename,
                    1,
                    1,
                    "",
                    f"the top of {filename} must be a mapping of keys "
                    f"(project:, environments:, …), not {_kind(data)}",
                    f"{INIT_HINT} to see the expected layout",
                )
            ]
        )
    return validate_spec(_plain(data), file=filename, positions=data, found=duplicates)


def _yaml(*, allow_duplicates: bool) -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = allow_duplicates
    return yaml


def _parse(text: str, filename: str) -> tuple[Any, list[SpecProblem]]:
    """The round-trip data, and a problem per duplicate key (the first occurrence of a key wins)."""
    try:
        with warnings.catch_warnings():
            # a redefined anchor is valid YAML (the later one wins); ruamel only warns about it
            warnings.simplefilter("ignore", ReusedAnchorWarning)
            try:
                return _yaml(allow_duplicates=False).load(text), []
            except DuplicateKeyError:
                # rare, so only now pay for a second pass that finds every duplicate with its position
                return _yaml(allow_duplicates=True).load(text), _duplicate_keys(text, filename)
    except YAMLError as exc:
        raise SpecError([_syntax_problem(exc, text, filename)]) from None


def _syntax_problem(exc: YAMLError, text: str, filename: str) -> SpecProblem:
    if isinstance(exc, MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        return SpecProblem(
            filename,
            mark.line + 1,
            mark.column + 1,
            "",
            f"YAML syntax error: {what}{context}",
            _syntax_hint(what),
        )
    if isinstance(exc, ReaderError):
        line = text[: exc.position].count("\n") + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        return SpecProblem(
            filename,
            line,
            column,
            "",
            "the file contains a character YAML does not allow",
            "remove control characters",
        )
    return SpecProblem(filename, None, None, "", f"YAML syntax error: {exc}", None)


def _syntax_hint(problem: str) -> str | None:
    if "\\t" in problem or "tab" in problem:
        return "indent with spaces, not tabs"
    if "mapping values are not allowed" in problem:
        return "put a space after each colon, and quote values that contain ': '"
    if "another document" in problem:
        return "conveyor.yaml holds one document; remove the extra `---`"
    return "check the indentation and quotes around this spot"


def _duplicate_keys(text: str, filename: str) -> list[SpecProblem]:
    root = _yaml(allow_duplicates=True).compose(text)
    problems: list[SpecProblem] = []
    visited: set[int] = set()

    def walk(node: Node | None, path: tuple[str | int, ...]) -> None:
        if node is None or id(node) in visited:
            return
        visited.add(id(node))
        if isinstance(node, MappingNode):
            first_seen: dict[tuple[str, Any], int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = (key_node.tag, key_node.value if isinstance(key_node.value, str) else id(key_node))
                shown = key_node.value if isinstance(key_node.value, str) else "?"
                if key in first_seen:
                    problems.append(
                        SpecProblem(
                            filename,
                            key_node.start_mark.line + 1,
                            key_node.start_mark.column + 1,
                            path_text((*path, shown)),
                            f"duplicate key '{shown}'",
                            f"'{shown}' is already set at line {first_seen[key]}; keep only one",
                        )
                    )
                else:
                    first_seen[key] = key_node.start_mark.line + 1
                walk(value_node, (*path, shown))
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))

    walk(root, ())
    return problems


def _plain(node: Any) -> Any:
    """ruamel's round-trip types turned into plain dict, list, str, int, float, bool, date and datetime."""
    if isinstance(node, dict):
        return {_plain(key): _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(item) for item in node]
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, datetime):
        return datetime.fromisoformat(node.isoformat())
    if isinstance(node, date):
        return date(node.year, node.month, node.day)
    return node


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a single line of text"
    return f"the value {value!r}"
