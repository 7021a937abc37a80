"""Flag evaluation: deterministic, stable and fair rollouts, disabled flags and errors as flagd answers."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.flags.evaluate import evaluate, evaluate_all
from conveyor.flags.model import parse_document
from tests.unit.flags.schema import FIXTURES

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
T0_PLUS_1Y = datetime(2027, 11, 29, 10, 0, tzinfo=UTC)

names = st.sampled_from(["on", "off", "red", "blue", "green", "v1", "v2"])
attributes = st.sampled_from(["email", "plan", "country", "version", "age"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 200), st.text(max_size=12))
contexts = st.dictionaries(attributes, scalars, max_size=4).flatmap(
    lambda ctx: st.one_of(st.just(ctx), st.text(max_size=10).map(lambda key: {**ctx, "targetingKey": key}))
)


@st.composite
def flags(draw: st.DrawFn) -> dict[str, Any]:
    """A valid flag: variants of one type, a default among them, and optional targeting over them."""
    variant_names = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    values = draw(
        st.sampled_from(
            [
                lambda i: i % 2 == 0,
                lambda i: f"value-{i}",
                lambda i: i * 10,
                lambda i: {"n": i},
            ]
        )
    )
    variants = {name: values(i) for i, name in enumerate(variant_names)}
    condition = st.one_of(
        st.builds(lambda a, v: {"==": [{"var": a}, v]}, attributes, scalars),
        st.builds(lambda a, v: {"in": [v, {"var": a}]}, attributes, st.text(max_size=3)),
        st.builds(lambda a, v: {"ends_with": [{"var": a}, v]}, attributes, st.text(max_size=3)),
        st.builds(lambda a: {"sem_ver": [{"var": a}, ">=", "1.2.0"]}, attributes),
    )
    buckets = st.lists(
        st.tuples(st.sampled_from(variant_names), st.integers(0, 100)), min_size=1, max_size=4
    ).filter(lambda bs: sum(w for _, w in bs) > 0)
    fractional = buckets.map(lambda bs: {"fractional": [list(b) for b in bs]})
    leaf = st.one_of(st.sampled_from([*variant_names, None]), fractional)
    targeting = st.one_of(
        st.none(),
        fractional,
        st.builds(lambda c, v, rest: {"if": [c, v, rest]}, condition, st.sampled_from(variant_names), leaf),
    )
    flag: dict[str, Any] = {
        "state": draw(st.sampled_from(["ENABLED", "DISABLED"])),
        "variants": variants,
        "defaultVariant": draw(st.sampled_from([*variant_names, None])),
    }
    chosen = draw(targeting)
    if chosen is not None:
        flag["targeting"] = chosen
    return flag


def doc(flag: dict[str, Any], key: str = "f") -> dict[str, Any]:
    return {"flags": {key: flag}}


@given(flags(), contexts)
def test_evaluation_is_deterministic(flag: dict[str, Any], context: dict[str, Any]) -> None:
    first = evaluate(doc(flag), "f", context, now=T0)
    assert first == evaluate(doc(flag), "f", dict(reversed(list(context.items()))), now=T0)
    assert first == evaluate(json.loads(json.dumps(doc(flag))), "f", context, now=T0)


@given(flags())
def test_every_generated_flag_is_valid_by_the_model(flag: dict[str, Any]) -> None:
    parse_document(doc(flag))  # the strategy above builds only what the model accepts


@given(flags(), contexts)
def test_every_resolved_variant_is_one_of_the_flags_variants(
    flag: dict[str, Any], context: dict[str, Any]
) -> None:
    resolution = evaluate(doc(flag), "f", context, now=T0)
    assert resolution.error_code is None
    if resolution.variant is None:
        # no variant only when the application's own default applies
        assert resolution.reason in ("DISABLED", "DEFAULT") and resolution.value is None
    else:
        assert resolution.variant in flag["variants"]
        assert resolution.value == flag["variants"][resolution.variant]


@given(flags(), contexts)
def test_a_disabled_flag_always_answers_disabled_with_no_value(
    flag: dict[str, Any], context: dict[str, Any]
) -> None:
    resolution = evaluate(doc({**flag, "state": "DISABLED"}), "f", context, now=T0)
    assert (resolution.reason, resolution.value, resolution.variant) == ("DISABLED", None, None)


ROLLOUT_KEYS = [f"user-{i}" for i in range(4000)]


@settings(max_examples=15)
@given(st.lists(st.integers(1, 100), min_size=2, max_size=4))
def test_fractional_shares_converge_to_the_declared_weights(weights: list[int]) -> None:
    names = [f"v{i}" for i in range(len(weights))]
    flag = {
        "state": "ENABLED",
        "variants": {name: name for name in names},
        "defaultVariant": names[0],
        "targeting": {"fractional": [[name, w] for name, w in zip(names, weights, strict=True)]},
    }
    seen = Counter(evaluate(doc(flag), "f", {"targetingKey": k}, now=T0).variant for k in ROLLOUT_KEYS)
    for name, weight in zip(names, weights, strict=True):
        declared = weight / sum(weights)
        assert abs(seen[name] / len(ROLLOUT_KEYS) - declared) < 0.03, (name, seen, weights)


@given(st.text(min_size=1, max_size=30), contexts)
def test_a_targeting_key_stays_in_its_bucket_whatever_else_the_context_holds(
    key: str, context: dict[str, Any]
) -> None:
    flag = {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "off",
        "targeting": {"fractional": [["on", 30], ["off", 70]]},
    }
    alone = evaluate(doc(flag), "f", {"targetingKey": key}, now=T0)
    later = evaluate(doc(flag), "f", {**context, "targetingKey": key}, now=T0_PLUS_1Y)
    assert alone.variant == later.variant and alone.reason == "TARGETING_MATCH"


def test_raising_a_rollout_only_moves_keys_into_the_rolled_out_variant() -> None:
    def rollout(percent: int) -> dict[str, Any]:
        return doc(
            {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": "off",
                "targeting": {"fractional": [["on", percent], ["off", 100 - percent]]},
            }
        )

    at10 = {k: evaluate(rollout(10), "f", {"targetingKey": k}, now=T0).value for k in ROLLOUT_KEYS}
    at50 = {k: evaluate(rollout(50), "f", {"targetingKey": k}, now=T0).value for k in ROLLOUT_KEYS}
    assert all(at50[k] for k, on in at10.items() if on)  # nobody who had it loses it


# flagd-testbed (github.com/open-feature/flagd-testbed, flags/custom-ops.json and
# flags/edge-case-flags.json; scenarios in gherkin/targeting.feature, the "v2" examples)
def _cards(seed: Any) -> dict[str, Any]:
    return {
        "state": "ENABLED",
        "variants": {
            "clubs": "clubs",
            "diamonds": "diamonds",
            "hearts": "hearts",
            "spades": "spades",
            "wild": "wild",
        },
        "defaultVariant": "wild",
        "targeting": {"fractional": [seed, ["clubs", 25], ["diamonds", 25], ["hearts", 25], ["spades", 25]]},
    }


TESTBED = {
    "flags": {
        "fractional-flag": _cards({"cat": [{"var": "$flagd.flagKey"}, {"var": "user.name"}]}),
        "fractional-flag-A-shared-seed": _cards({"cat": ["shared-seed", {"var": "user.name"}]}),
        "fractional-flag-shorthand": {
            "state": "ENABLED",
            "variants": {"heads": "heads", "tails": "tails", "draw": "draw"},
            "defaultVariant": "draw",
            "targeting": {"fractional": [["heads"], ["tails", 1]]},
        },
        "fractional-hash-edge-flag": {
            "state": "ENABLED",
            "variants": {"lower": "lower", "upper": "upper"},
            "defaultVariant": "lower",
            "targeting": {"fractional": [{"var": "targetingKey"}, ["lower", 50], ["upper", 50]]},
        },
        "fractional-single-entry-flag": {
            "state": "ENABLED",
            "variants": {"single": "single", "fallback": "fallback"},
            "defaultVariant": "fallback",
            "targeting": {"fractional": [["single", 1]]},
        },
        "fractional-zero-weights-flag": {
            "state": "ENABLED",
            "variants": {"true": "true", "false": "false", "fallback": "fallback"},
            "defaultVariant": "fallback",
            "targeting": {
                "if": [{"fractional": [{"var": "targetingKey"}, ["one", 0], ["two", 0]]}, "true", "false"]
            },
        },
        "fractional-negative-weight-flag": {
            "state": "ENABLED",
            "variants": {"one": "one", "two": "two", "fallback": "fallback"},
            "defaultVariant": "fallback",
            "targeting": {"fractional": [{"var": "targetingKey"}, ["one", -50], ["two", 100]]},
        },
        "starts-ends-flag": {
            "state": "ENABLED",
            "variants": {"prefix": "prefix", "postfix": "postfix", "none": "none"},
            "defaultVariant": "none",
            "targeting": {
                "if": [
                    {"starts_with": [{"var": "id"}, "abc"]},
                    "prefix",
                    {
                        "if": [
                            {"ends_with": [{"var": "id"}, "xyz"]},
                            "postfix",
                            {"if": [{"ends_with": [{"var": "id"}, 3]}, "fail", "none"]},
                        ]
                    },
                ]
            },
        },
        "equal-greater-lesser-version-flag": {
            "state": "ENABLED",
            "variants": {"equal": "equal", "greater": "greater", "lesser": "lesser", "none": "none"},
            "defaultVariant": "none",
            "targeting": {
                "if": [
                    {"sem_ver": [{"var": "version"}, "=", "2.0.0"]},
                    "equal",
                    {"sem_ver": [{"var": "version"}, ">", "2.0.0"]},
                    "greater",
                    {"sem_ver": [{"var": "version"}, "<", "2.0.0"]},
                    "lesser",
                    {"if": [{"sem_ver": [{"var": "version"}, "=", "2.0.0.0"]}, "fail", "none"]},
                ]
            },
        },
        "major-minor-version-flag": {
            "state": "ENABLED",
            "variants": {"minor": "minor", "major": "major", "none": "none"},
            "defaultVariant": "none",
            "targeting": {
                "if": [
                    {"sem_ver": [{"var": "version"}, "~", "3.0.0"]},
                    "minor",
                    {"sem_ver": [{"var": "version"}, "^", "3.0.0"]},
                    "major",
                    "none",
                ]
            },
        },
        "semver-partial-version-flag": {
            "state": "ENABLED",
            "variants": {"match": "match", "no-match": "no-match"},
            "defaultVariant": "no-match",
            "targeting": {"if": [{"sem_ver": [{"var": "version"}, "^", "1"]}, "match", "no-match"]},
        },
        "semver-invalid-version-flag": {
            "state": "ENABLED",
            "variants": {"true": "true", "false": "false", "fallback": "fallback"},
            "defaultVariant": "fallback",
            "targeting": {"if": [{"sem_ver": [{"var": "version"}, "=", "1.0.0"]}, "true", "false"]},
        },
        "targeting-null-variant-flag": {
            "state": "ENABLED",
            "variants": {"one": 1, "two": 2},
            "defaultVariant": "two",
            "targeting": {"if": [True, None, "one"]},
        },
        "error-targeting-flag": {
            "state": "ENABLED",
            "variants": {"one": 1, "two": 2},
            "defaultVariant": "two",
            "targeting": {"invalid": ["this is not valid targeting"]},
        },
        "missing-variant-targeting-flag": {
            "state": "ENABLED",
            "variants": {"one": 1, "two": 2},
            "defaultVariant": "two",
            "targeting": {"if": [True, "three", "one"]},
        },
        "non-string-variant-targeting-flag": {
            "state": "ENABLED",
            "variants": {"false": 1, "true": 2},
            "defaultVariant": "false",
            "targeting": {"if": [True, True, False]},
        },
        "empty-targeting-flag": {
            "state": "ENABLED",
            "variants": {"false": 1, "true": 2},
            "defaultVariant": "false",
            "targeting": {},
        },
    }
}

VECTORS = [
    ("fractional-flag", {"user": {"name": "jack"}}, "hearts"),
    ("fractional-flag", {"user": {"name": "queen"}}, "spades"),
    ("fractional-flag", {"user": {"name": "ten"}}, "clubs"),
    ("fractional-flag", {"user": {"name": "nine"}}, "diamonds"),
    ("fractional-flag", {"user": {"name": "3"}}, "clubs"),
    ("fractional-flag-A-shared-seed", {"user": {"name": "seven"}}, "hearts"),
    ("fractional-flag-A-shared-seed", {"user": {"name": "eight"}}, "diamonds"),
    ("fractional-flag-A-shared-seed", {"user": {"name": "nine"}}, "clubs"),
    ("fractional-flag-A-shared-seed", {"user": {"name": "two"}}, "spades"),
    ("fractional-flag-shorthand", {"targetingKey": "jon@company.com"}, "heads"),
    ("fractional-flag-shorthand", {"targetingKey": "jane@company.com"}, "tails"),
    # keys whose MurmurHash3 is 0, 1, 2^31-1, 2^31 and 2^32-1: the edges of the bucket mapping
    ("fractional-hash-edge-flag", {"targetingKey": "ejOoVL"}, "lower"),
    ("fractional-hash-edge-flag", {"targetingKey": "bY9fO-"}, "lower"),
    ("fractional-hash-edge-flag", {"targetingKey": "SI7p-"}, "lower"),
    ("fractional-hash-edge-flag", {"targetingKey": "6LvT0"}, "upper"),
    ("fractional-hash-edge-flag", {"targetingKey": "ceQdGm"}, "upper"),
    ("fractional-single-entry-flag", {}, "single"),
    ("fractional-zero-weights-flag", {"targetingKey": "any-user"}, "fallback"),
    ("fractional-negative-weight-flag", {"targetingKey": "any-user"}, "two"),
    ("starts-ends-flag", {"id": "abcdef"}, "prefix"),
    ("starts-ends-flag", {"id": "uvwxyz"}, "postfix"),
    ("starts-ends-flag", {"id": "abcxyz"}, "prefix"),
    ("starts-ends-flag", {"id": "lmnopq"}, "none"),
    ("starts-ends-flag", {"id": "3"}, "none"),
    ("equal-greater-lesser-version-flag", {"version": "2.0.0"}, "equal"),
    ("equal-greater-lesser-version-flag", {"version": "2.1.0"}, "greater"),
    ("equal-greater-lesser-version-flag", {"version": "1.9.0"}, "lesser"),
    ("equal-greater-lesser-version-flag", {"version": "2.0.0-alpha"}, "lesser"),
    ("equal-greater-lesser-version-flag", {"version": "2.0.0.0"}, "none"),
    ("major-minor-version-flag", {"version": "3.0.1"}, "minor"),
    ("major-minor-version-flag", {"version": "3.1.0"}, "major"),
    ("major-minor-version-flag", {"version": "4.0.0"}, "none"),
    ("semver-partial-version-flag", {"version": "1.5.0"}, "match"),
    ("semver-partial-version-flag", {"version": "1.0"}, "match"),
    ("semver-partial-version-flag", {"version": 1}, "match"),
    ("semver-partial-version-flag", {"version": "2.0.0"}, "no-match"),
    ("semver-invalid-version-flag", {"version": "not-a-version"}, "fallback"),
    ("targeting-null-variant-flag", {}, 2),
    ("non-string-variant-targeting-flag", {}, 2),
    ("empty-targeting-flag", {}, 1),
]


@pytest.mark.parametrize(
    ("key", "context", "value"), VECTORS, ids=[f"{k}-{json.dumps(c)}" for k, c, _ in VECTORS]
)
def test_flagd_testbed_vectors(key: str, context: dict[str, Any], value: Any) -> None:
    assert evaluate(TESTBED, key, context, now=T0).value == value


@pytest.mark.parametrize(
    ("key", "code"),
    [
        ("error-targeting-flag", "PARSE_ERROR"),
        ("missing-variant-targeting-flag", "GENERAL"),
        ("no-such-flag", "FLAG_NOT_FOUND"),
    ],
)
def test_errors_carry_flagds_error_codes_and_no_value(key: str, code: str) -> None:
    resolution = evaluate(TESTBED, key, {}, now=T0)
    assert (resolution.reason, resolution.error_code, resolution.value) == ("ERROR", code, None)


def test_an_operator_error_serves_the_default_variant_with_reason_default() -> None:
    resolution = evaluate(TESTBED, "semver-invalid-version-flag", {"version": "x"}, now=T0)
    assert (resolution.variant, resolution.reason) == ("fallback", "DEFAULT")


def test_a_value_of_another_type_than_expected_is_a_type_mismatch() -> None:
    resolution = evaluate(TESTBED, "targeting-null-variant-flag", {}, now=T0, expected="boolean")
    assert resolution.error_code == "TYPE_MISMATCH" and "integer" in str(resolution.error_message)
    assert evaluate(TESTBED, "targeting-null-variant-flag", {}, now=T0, expected="float").value == 2


def test_flagd_properties_come_from_the_injected_clock_and_the_flag_key() -> None:
    flag = {
        "state": "ENABLED",
        "variants": {"before": "before", "after": "after"},
        "defaultVariant": "before",
        "targeting": {"if": [{">": [{"var": "$flagd.timestamp"}, {"var": "launch"}]}, "after", "before"]},
    }
    launch = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
    assert evaluate(doc(flag), "f", {"launch": launch}, now=T0).variant == "before"
    assert evaluate(doc(flag), "f", {"launch": launch}, now=T0_PLUS_1Y).variant == "after"
    keyed = {**flag, "targeting": {"if": [{"==": [{"var": "$flagd.flagKey"}, "f"]}, "after", "before"]}}
    assert evaluate(doc(keyed), "f", {}, now=T0).variant == "after"


def test_a_targeting_key_given_apart_joins_the_context() -> None:
    flag = TESTBED["flags"]["fractional-flag-shorthand"]
    via_argument = evaluate(doc(flag, "fractional-flag-shorthand"), "fractional-flag-shorthand", {},
                            now=T0, targeting_key="jon@company.com")  # fmt: skip
    assert via_argument.value == "heads"


# the shared fixture: github.com/open-feature/flagd-schemas json/test/flags/positive/example.flagd.json
EXAMPLE = json.loads((FIXTURES / "example.flagd.json").read_text())
STATIC = {
    "myBoolFlag": (True, "on"),
    "myStringFlag": ("val1", "key1"),
    "myFloatFlag": (1.23, "one"),
    "myIntFlag": (1, "one"),
    "myObjectFlag": ({"key": "val"}, "object1"),
}
CONTEXTS = [
    {},
    {"color": "yellow"},
    {"color": "blue"},
    {"email": "rachel@faas.com"},
    {"email": "ana@example.com"},
]


@pytest.mark.parametrize("context", CONTEXTS, ids=[json.dumps(c) for c in CONTEXTS])
def test_every_flag_of_the_flagd_example_file(context: dict[str, Any]) -> None:
    resolved = {r.key: r for r in evaluate_all(EXAMPLE, context, now=T0)}
    assert set(resolved) == set(EXAMPLE["flags"])
    for key, (value, variant) in STATIC.items():  # no targeting: the default variant, STATIC
        assert (resolved[key].value, resolved[key].variant, resolved[key].reason) == (
            value,
            variant,
            "STATIC",
        )
    # isColorYellow: if color == yellow then on else off (both chosen by targeting)
    yellow = context.get("color") == "yellow"
    assert (resolved["isColorYellow"].variant, resolved["isColorYellow"].reason) == (
        "on" if yellow else "off",
        "TARGETING_MATCH",
    )
    # fibAlgo and headerColor: $ref emailWithFaas (email contains @faas.com), else null → default
    faas = "@faas.com" in context.get("email", "")
    fib, header = resolved["fibAlgo"], resolved["headerColor"]
    assert (fib.variant, fib.reason) == (("binet", "TARGETING_MATCH") if faas else ("recursive", "DEFAULT"))
    if faas:  # a 4 × 25 % split by email: one of the four colours, the same one every time
        assert header.variant in ("red", "blue", "green", "yellow") and header.reason == "TARGETING_MATCH"
        assert header == evaluate(EXAMPLE, "headerColor", context, now=T0_PLUS_1Y)
    else:
        assert (header.value, header.variant, header.reason) == ("#FF0000", "red", "DEFAULT")


def test_the_example_files_fractional_split_puts_a_quarter_of_emails_in_each_colour() -> None:
    emails = [{"email": f"user{i}@faas.com"} for i in range(4000)]
    seen = Counter(evaluate(EXAMPLE, "headerColor", c, now=T0).variant for c in emails)
    assert set(seen) == {"red", "blue", "green", "yellow"}
    assert all(abs(n / 4000 - 0.25) < 0.03 for n in seen.values()), seen
