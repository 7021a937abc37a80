"""What `conveyor flag set` asks for becomes a flag: a boolean switch, variants, a default or a file."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.errors import ConveyorError, InvalidRequest, NotFound
from conveyor.flags.model import InvalidFlag, parse_flag
from conveyor.flags.service import compose

RULE = {"if": [{"==": [{"var": "plan"}, "pro"]}, "on", None]}
BOOL = parse_flag("f", {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
                        "targeting": RULE})  # fmt: skip
THEME = parse_flag(
    "t", {"state": "DISABLED", "variants": {"dark": "#111", "light": "#eee"}, "defaultVariant": "dark"}
)


def test_on_creates_a_boolean_flag_and_later_flips_only_its_default() -> None:
    created = compose(None, "f", on=True)
    assert created.definition() == {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "on",
    }
    flipped = compose(BOOL, "f", on=True)
    assert flipped.default_variant == "on" and flipped.targeting == RULE and flipped.state == "ENABLED"


def test_new_variants_keep_state_and_targeting_and_the_default_when_it_still_exists() -> None:
    changed = compose(THEME, "t", variants={"dark": "#000", "light": "#fff", "blue": "#00f"})
    assert (changed.state, changed.default_variant, changed.variants["dark"]) == ("DISABLED", "dark", "#000")
    renamed = compose(THEME, "t", variants={"night": "#000", "day": "#fff"})
    assert renamed.default_variant == "night"  # the old default is gone: the first variant
    assert compose(THEME, "t", default="light").default_variant == "light"


def test_a_whole_definition_replaces_the_flag() -> None:
    definition: dict[str, Any] = {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "b"}
    assert compose(BOOL, "f", definition=definition).definition() == definition


@pytest.mark.parametrize(
    ("current", "changes", "error", "message"),
    [
        (THEME, {"on": True}, InvalidRequest, "is a string flag, so --on/--off does not apply"),
        (None, {"on": True, "variants": {"a": 1}}, InvalidRequest, "--on/--off sets a boolean flag's"),
        (None, {"default": "x"}, NotFound, "there is no flag 't' yet"),
        (None, {}, InvalidRequest, "say what to set"),
        (BOOL, {"variants": {"yes": True, "no": False}}, InvalidFlag, "targeting can return 'on'"),
        (None, {"definition": {"state": "ENABLED"}, "on": True}, InvalidRequest, "not both"),
        (THEME, {"default": "blue"}, InvalidFlag, "defaultVariant 'blue' is not one of its variants"),
    ],
    ids=["on-for-strings", "on-and-variants", "default-of-nothing", "nothing", "variants-break-targeting",
         "definition-and-options", "unknown-default"],
)  # fmt: skip
def test_contradictory_or_invalid_requests_are_refused(
    current: Any, changes: dict[str, Any], error: type[ConveyorError], message: str
) -> None:
    with pytest.raises(error) as raised:
        compose(current, "t", **changes)
    assert message in raised.value.detail and raised.value.hint
