"""Configuration resolution: deterministic, right provenance, higher layers win, missing keys named."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.config.resolve import ORDER, Layer, parse_value, resolve
from conveyor.spec.settings import ConfigSetting

keys = st.sampled_from(["LOG_LEVEL", "DB_POOL_SIZE", "API_TIMEOUT", "CACHE", "REGION"])
values = st.one_of(st.text(max_size=8), st.integers(-5, 500), st.booleans())
layer_sets = st.lists(
    st.builds(
        lambda name, vals: Layer(name, vals, {k: f"{name}:{k}" for k in vals}),
        st.sampled_from(ORDER),
        st.dictionaries(keys, values, max_size=5),
    ),
    max_size=5,
    unique_by=lambda layer: layer.name,
)
SCHEMA = {
    "LOG_LEVEL": ConfigSetting(type="string", choices=["debug", "info"]),
    "DB_POOL_SIZE": ConfigSetting(type="integer", required=True),
}


@given(layer_sets)
def test_resolution_is_deterministic_whatever_the_order_layers_come_in(layers: list[Layer]) -> None:
    assert resolve(SCHEMA, layers) == resolve(SCHEMA, list(reversed(layers)))


@given(layer_sets)
def test_the_highest_layer_that_sets_a_key_wins_and_says_so(layers: list[Layer]) -> None:
    resolved = {s.key: s for s in resolve(SCHEMA, layers).settings}
    for key, setting in resolved.items():
        setters = sorted((ORDER.index(layer.name), layer) for layer in layers if key in layer.values)
        winner = setters[0][1]
        assert setting.layer == winner.name and setting.value == winner.values[key]
        assert setting.origin == f"{winner.name}:{key}"
        assert [s.layer for s in setting.shadowed] == [layer.name for _, layer in setters[1:]]


@given(layer_sets)
def test_a_required_key_no_layer_sets_is_always_a_problem_naming_it(layers: list[Layer]) -> None:
    resolution = resolve(SCHEMA, layers)
    set_anywhere = any("DB_POOL_SIZE" in layer.values for layer in layers)
    missing = [p for p in resolution.problems if p.key == "DB_POOL_SIZE" and "required" in p.message]
    assert bool(missing) == (not set_anywhere)
    if missing:
        assert "DB_POOL_SIZE" in missing[0].message and "DB_POOL_SIZE" in missing[0].fix


def test_a_wrong_value_names_its_layer_and_the_fix_there() -> None:
    layers = [
        Layer("override", {"LOG_LEVEL": "loud"}, {"LOG_LEVEL": "override by sam"}),
        Layer("environment", {"LOG_LEVEL": "info", "DB_POOL_SIZE": 5}),
    ]
    fixes = {"override": "conveyor config unset production LOG_LEVEL"}
    (problem,) = resolve(SCHEMA, layers, fixes).problems  # type: ignore[arg-type]
    assert problem.message == "LOG_LEVEL=loud from override by sam: 'loud' is not one of debug, info"
    assert problem.fix.startswith("conveyor config unset production LOG_LEVEL")


def test_values_reach_the_app_as_text() -> None:
    env = resolve({}, [Layer("environment", {"A": True, "B": 20, "C": "x"})]).env()
    assert env == {"A": "true", "B": "20", "C": "x"}


@pytest.mark.parametrize(
    "setting,text,expected",
    [
        (ConfigSetting(type="integer"), "20", 20),
        (ConfigSetting(type="boolean"), "TRUE", True),
        (ConfigSetting(type="number"), "0.5", 0.5),
        (ConfigSetting(type="duration"), "30s", "30s"),
        (None, "anything", "anything"),
    ],
)
def test_command_line_values_are_typed_by_the_schema(
    setting: ConfigSetting | None, text: str, expected: object
) -> None:
    assert parse_value(setting, text) == expected


@pytest.mark.parametrize(
    "setting,text,words",
    [
        (ConfigSetting(type="integer"), "abc", "expected an integer"),
        (ConfigSetting(type="boolean"), "yes", "expected true or false"),
        (ConfigSetting(type="duration"), "soon", "expected a duration"),
        (ConfigSetting(type="string", choices=["a", "b"]), "c", "is not one of a, b"),
    ],
)
def test_a_value_that_does_not_fit_is_refused_with_the_reason(
    setting: ConfigSetting, text: str, words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        parse_value(setting, text)
