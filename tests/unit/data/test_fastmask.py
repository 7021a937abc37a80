"""The unrolled text transforms give exactly what Masker.mask gives, for any text and every option."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.data.fastmask import fast_masker
from conveyor.data.masking import Masker, Transform

MASKER = Masker("fast-path-test-key-0123456789abcdef")
RULES = [
    Transform("email"),
    Transform.of("email", unique=True),
    Transform.of("email", domain="corp.test"),
    Transform("name"),
    Transform("first_name"),
    Transform("last_name"),
    Transform("address"),
    Transform("phone"),
    Transform("hash"),
    Transform.of("hash", length=8),
]
# inputs that contain likely outputs, so the leak re-draw is exercised too
TRICKY = ["Emma", "emma.chen", "1 Oak Street", "+12025550100", "Mia", "0", "", "ÄÖ ß\u0130", "a\x00b"]


@pytest.mark.parametrize("rule", RULES, ids=str)
@given(value=st.one_of(st.text(), st.sampled_from(TRICKY)))
@settings(max_examples=60)
def test_fast_and_core_agree(rule: Transform, value: str) -> None:
    fast = fast_masker(MASKER, rule)
    assert fast is not None
    assert fast(value) == MASKER.mask(rule, value)


def test_a_transform_without_a_fast_path_is_left_to_the_core() -> None:
    assert fast_masker(MASKER, Transform("card_number")) is None
    assert fast_masker(MASKER, Transform("date_shift")) is None


@pytest.mark.parametrize(
    "rule", [Transform("first_name"), Transform("last_name"), Transform("name")], ids=str
)
def test_names_fed_back_as_inputs_are_redrawn_alike(rule: Transform) -> None:
    from conveyor.data.masking import FIRST_NAMES, LAST_NAMES

    fast = fast_masker(MASKER, rule)
    assert fast is not None
    values = [*FIRST_NAMES, *LAST_NAMES]
    assert [fast(v) for v in values] == [MASKER.mask(rule, v) for v in values]
