"""Diffs of spec documents and the plans they summarize to."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.spec import Change, apply_changes, diff_documents, load_spec_text, render_init, summarize_plan


def _document(**extra: str) -> dict[str, Any]:
    return load_spec_text(render_init("shop", set(extra))).to_document()


class TestDiff:
    def test_identical_documents_have_no_changes(self) -> None:
        document = _document()
        assert diff_documents(document, document) == []
        assert summarize_plan([]).is_empty

    def test_nested_changes_have_full_paths(self) -> None:
        old = {"environments": {"production": {"approvals": {"required": 2}, "tier": "production"}}}
        new = {
            "environments": {"production": {"approvals": {"required": 3}, "tier": "production", "ttl": None}}
        }
        assert diff_documents(old, new) == [
            Change("change", ("environments", "production", "approvals", "required"), 2, 3),
            Change("add", ("environments", "production", "ttl"), None, None),
        ]

    def test_lists_are_compared_whole(self) -> None:
        old = {"pipeline": {"stages": ["a", "b"]}}
        new = {"pipeline": {"stages": ["a", "c"]}}
        assert diff_documents(old, new) == [Change("change", ("pipeline", "stages"), ["a", "b"], ["a", "c"])]

    def test_a_type_change_is_a_change(self) -> None:
        assert diff_documents({"a": 1}, {"a": 1.0}) == [Change("change", ("a",), 1, 1.0)]
        assert diff_documents({"a": True}, {"a": 1}) == [Change("change", ("a",), True, 1)]
        assert diff_documents({"a": {"b": 1}}, {"a": "x"}) == [Change("change", ("a",), {"b": 1}, "x")]

    def test_nothing_before_means_everything_is_added(self) -> None:
        document = _document()
        changes = diff_documents(None, document)
        assert [c.path for c in changes] == [(key,) for key in document]
        assert all(c.op == "add" for c in changes)
        assert apply_changes(None, changes) == document

    def test_changes_describe_themselves(self) -> None:
        assert Change("change", ("a", "b"), 1, 2).describe() == "~ a.b: 1 → 2"
        assert Change("add", ("a",), None, {"x": 1}).describe() == "+ a: {…}"
        assert Change("remove", ("a",), "x", None).describe() == "- a: 'x'"


class TestPlan:
    def test_adding_environments(self) -> None:
        plan = summarize_plan(diff_documents(_document(), _document(qa="", dr="")))
        assert plan.environments_added == ("qa", "dr")
        assert plan.environments_removed == ()
        assert set(plan.environments_changed) == {"production"}  # it now fails over to dr
        assert set(plan.sections_changed) == {"pipeline"}
        assert plan.summary() == (
            "environments added: qa, dr; environments changed: production; also changed: pipeline"
        )

    def test_removing_environments(self) -> None:
        plan = summarize_plan(diff_documents(_document(qa=""), _document()))
        assert plan.environments_removed == ("qa",)
        assert not plan.is_empty

    def test_field_level_changes_are_relative_to_the_environment(self) -> None:
        old = _document()
        new = load_spec_text(
            render_init("shop").replace(
                "required: 2                   # two distinct reviewers", "required: 3"
            )
        ).to_document()
        plan = summarize_plan(diff_documents(old, new))
        assert plan.environments_changed == {
            "production": (Change("change", ("approvals", "required"), 2, 3),)
        }
        assert plan.sections_changed == {}

    def test_a_first_apply_adds_every_environment(self) -> None:
        document = _document()
        plan = summarize_plan(diff_documents(None, document))
        assert plan.environments_added == tuple(document["environments"])
        assert set(plan.sections_changed) == {
            "version",
            "project",
            "roles",
            "services",
            "signing",
            "pipeline",
        }

    def test_project_and_roles_are_other_sections(self) -> None:
        old = {"project": "a", "roles": {}, "environments": {"x": {"tier": "staging"}}}
        new = {
            "project": "b",
            "roles": {"qa": {"permissions": []}},
            "environments": {"x": {"tier": "staging"}},
        }
        plan = summarize_plan(diff_documents(old, new))
        assert set(plan.sections_changed) == {"project", "roles"}
        assert plan.summary() == "also changed: project, roles"


_KEYS = st.sampled_from(["a", "b", "environments", "tier", "steps"])
_LEAVES = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) | st.text(max_size=3)
_VALUES = st.recursive(
    _LEAVES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_KEYS, children, max_size=3),
    max_leaves=12,
)
_DOCUMENTS = st.dictionaries(_KEYS, _VALUES, max_size=4)


@settings(max_examples=300)
@given(_DOCUMENTS)
def test_a_document_has_no_changes_against_itself(document: dict[str, Any]) -> None:
    assert diff_documents(document, document) == []


@settings(max_examples=300)
@given(_DOCUMENTS, _DOCUMENTS)
def test_applying_a_diff_turns_old_into_new(old: dict[str, Any], new: dict[str, Any]) -> None:
    changes = diff_documents(old, new)
    assert apply_changes(old, changes) == new
    assert diff_documents(apply_changes(old, changes), new) == []
    assert (changes == []) == (summarize_plan(changes).is_empty)
