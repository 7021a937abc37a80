"""Targeting Conveyor writes: rules then a rollout, read back and edited; `--when` words as JsonLogic."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.errors import InvalidRequest
from conveyor.flags.evaluate import evaluate
from conveyor.flags.model import parse_flag
from conveyor.flags.targeting import Chain, Rollout, chain_of, parse_condition, parse_when, rollout_weights

T0 = datetime(2026, 11, 29, tzinfo=UTC)
EMAIL = {"ends_with": [{"var": "email"}, "@example.com"]}
PRO = {"==": [{"var": "plan"}, "pro"]}

conditions = st.sampled_from([EMAIL, PRO, {"in": [{"var": "country"}, ["DE", "FR"]]}])
variants = st.sampled_from(["on", "off"])
rollouts = st.one_of(st.none(), st.integers(0, 100).map(lambda p: Rollout((("on", p), ("off", 100 - p)))))


@given(st.lists(st.tuples(conditions, variants), max_size=3, unique_by=lambda r: str(r[0])), rollouts)
def test_a_chain_reads_back_from_the_targeting_it_writes(rules: list[tuple[Any, str]], rollout: Any) -> None:
    chain = Chain(tuple(rules), rollout)
    assert chain_of(chain.to_targeting()) == chain


@given(st.lists(st.tuples(conditions, variants), max_size=3), conditions, variants)
def test_a_rule_for_the_same_condition_replaces_the_old_one_in_place(
    rules: list[tuple[Any, str]], condition: Any, variant: str
) -> None:
    chain = Chain()
    for cond, var in rules:
        chain = chain.with_rule(cond, var)
    before = [c for c, _ in chain.rules]
    after = chain.with_rule(condition, variant)
    assert [c for c, _ in after.rules] == (before if condition in before else [*before, condition])
    assert dict((str(c), v) for c, v in after.rules)[str(condition)] == variant


def test_rules_apply_in_order_before_the_rollout() -> None:
    chain = (
        Chain().with_rule(EMAIL, "on").with_rule(PRO, "off").with_rollout(Rollout((("on", 0), ("off", 100))))
    )
    flag = parse_flag(
        "f",
        {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
         "targeting": chain.to_targeting()},
    )  # fmt: skip
    document = {"flags": {"f": flag.definition()}}

    def served(context: dict[str, Any]) -> Any:
        return evaluate(document, "f", context, now=T0).variant

    assert served({"email": "ana@example.com", "plan": "pro", "targetingKey": "u1"}) == "on"
    assert served({"email": "ana@other.org", "plan": "pro", "targetingKey": "u1"}) == "off"
    assert served({"email": "ana@other.org", "targetingKey": "u1"}) == "off"  # the 0 % rollout


@pytest.mark.parametrize(
    "targeting",
    [{"if": [EMAIL, "on", "off"]}, {"==": [1, 1]}, {"if": [EMAIL, {"var": "x"}, None]}],
    ids=["string-else", "not-an-if", "computed-variant"],
)
def test_targeting_of_another_shape_is_not_mistaken_for_a_chain(targeting: Any) -> None:
    assert chain_of(targeting) is None


@pytest.mark.parametrize(
    ("percent", "weights"),
    [(10, (10, 90)), (0, (0, 100)), (100, (100, 0)), (2.5, (250, 9750)), (33.33, (3333, 6667))],
)
def test_rollout_weights(percent: float, weights: tuple[int, int]) -> None:
    assert rollout_weights(percent) == weights


@pytest.mark.parametrize("percent", [-1, 100.5])
def test_a_rollout_outside_0_to_100_is_refused(percent: float) -> None:
    with pytest.raises(InvalidRequest, match="not between 0 and 100"):
        rollout_weights(percent)


WHEN = [
    ("email ends_with @example.com", EMAIL),
    ("plan == pro and age >= 18", {"and": [PRO, {">=": [{"var": "age"}, 18]}]}),
    ("country in DE,FR", {"in": [{"var": "country"}, ["DE", "FR"]]}),
    ("country not_in DE,FR", {"!": {"in": [{"var": "country"}, ["DE", "FR"]]}}),
    ("email contains @faas", {"in": ["@faas", {"var": "email"}]}),
    ("beta == true", {"==": [{"var": "beta"}, True]}),
    ("plan == '42'", {"==": [{"var": "plan"}, "42"]}),
    ("name == 'Ana Lima'", {"==": [{"var": "name"}, "Ana Lima"]}),
    ("user.tier != gold", {"!=": [{"var": "user.tier"}, "gold"]}),
]


@pytest.mark.parametrize(("text", "logic"), WHEN, ids=[t for t, _ in WHEN])
def test_when_words_become_jsonlogic(text: str, logic: Any) -> None:
    assert parse_when(text) == logic


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("email", "incomplete"),
        ("email is @example.com", "'is' is not a condition operator"),
        ("plan == pro or age > 3", "expected 'and'"),
        ("plan == pro and", "expected 'and' then another comparison"),
        ("plan == 'pro", "cannot read the condition"),
        ("", "empty"),
    ],
)
def test_unreadable_when_words_say_what_is_wrong_and_how_to_write_them(text: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_when(text)
    assert (
        message in raised.value.detail
        and raised.value.hint
        and "ATTRIBUTE OPERATOR VALUE" in raised.value.hint
    )


def test_a_condition_may_also_be_jsonlogic_json() -> None:
    assert parse_condition('{"==": [{"var": "plan"}, "pro"]}') == PRO
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        parse_condition('{"==": [')
