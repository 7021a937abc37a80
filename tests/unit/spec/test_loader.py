"""Reading conveyor.yaml: syntax errors, odd shapes, files on disk, and never a raw exception."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.errors import SpecError
from conveyor.spec import load_spec_file, load_spec_text, render_init
from tests.unit.spec.helpers import MINIMAL, one_problem


class TestSyntax:
    @pytest.mark.parametrize(
        ("text", "line", "column", "message"),
        [
            (
                "project: demo\nenvironments: [a, b\n",
                3,
                1,
                "YAML syntax error: expected ',' or ']', but got '<stream end>'",
            ),
            (
                "project: demo\nenvironments:\n  dev: tier: development\n",
                3,
                12,
                "YAML syntax error: mapping values are not allowed here",
            ),
            ("project: 'demo\n", 2, 1, "YAML syntax error: found unexpected end of stream"),
        ],
        ids=["unclosed-list", "colon-in-value", "unclosed-quote"],
    )
    def test_syntax_errors_have_a_position(self, text: str, line: int, column: int, message: str) -> None:
        problem = one_problem(text)
        assert (problem.line, problem.column) == (line, column)
        assert problem.message.startswith(message)
        assert problem.hint

    def test_tabs(self) -> None:
        problem = one_problem("project: demo\nenvironments:\n\tdev: {}\n")
        assert problem.hint == "indent with spaces, not tabs"
        assert problem.line == 3

    def test_two_documents(self) -> None:
        problem = one_problem(MINIMAL + "---\nproject: other\n")
        assert problem.hint == "conveyor.yaml holds one document; remove the extra `---`"

    def test_control_characters(self) -> None:
        problem = one_problem("project: de\x01mo\n")
        assert (problem.line, problem.column) == (1, 12)
        assert problem.message == "the file contains a character YAML does not allow"


class TestShape:
    @pytest.mark.parametrize("text", ["", "\n\n", "# just a comment\n"])
    def test_an_empty_file(self, text: str) -> None:
        problem = one_problem(text)
        assert problem.message == "conveyor.yaml is empty"
        assert problem.hint == "run `conveyor init` to create one, or add environments:"

    def test_a_top_level_list(self) -> None:
        problem = one_problem("- development\n- production\n")
        assert problem.message == (
            "the top of conveyor.yaml must be a mapping of keys (project:, environments:, …), not a list"
        )
        assert (problem.line, problem.column) == (1, 1)

    def test_a_top_level_scalar(self) -> None:
        assert one_problem("hello\n").message.endswith("not a single line of text")

    def test_missing_top_level_keys(self) -> None:
        with pytest.raises(SpecError) as caught:
            load_spec_text("version: 1\n")
        assert [(p.path, p.message, p.line) for p in caught.value.problems] == [
            ("project", "missing required key 'project'", 1),
            ("environments", "missing required key 'environments'", 1),
        ]

    def test_unsupported_version(self) -> None:
        problem = one_problem(MINIMAL + "version: 2\n")
        assert (problem.path, problem.message, problem.hint) == (
            "version",
            "unknown version 2",
            "choose one of: 1",
        )

    def test_anchors_and_merge_keys_work(self) -> None:
        spec = load_spec_text(
            "project: demo\n"
            "x-common: &common {tier: production, owner: sre}\n"
            "environments:\n  production:\n    <<: *common\n    purpose: live\n"
        )
        production = spec.environments["production"]
        assert (production.owner, production.purpose) == ("sre", "live")
        assert "x-common" not in spec.to_document()

    def test_problems_inside_merged_keys_still_have_a_position(self) -> None:
        problem = one_problem(
            "project: demo\nx-common: &common {tier: prod}\nenvironments:\n  production:\n    <<: *common\n"
        )
        assert (problem.message, problem.line) == ("unknown tier 'prod'", 4)

    def test_the_error_summary_names_the_file_and_first_problem(self) -> None:
        with pytest.raises(SpecError) as caught:
            load_spec_text(MINIMAL.replace("tier: production", "tier: prod"), "deploy/conveyor.yaml")
        error = caught.value
        assert error.detail.startswith("1 problem(s) in deploy/conveyor.yaml: deploy/conveyor.yaml:6:11:")
        problem = error.to_problem()
        assert (
            problem["status"] == 422
            and problem["line"] == 6
            and problem["errors"][0]["path"] == ("environments.production.tier")
        )


class TestFiles:
    def test_a_file_is_read_and_named_as_given(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)
        Path("conveyor.yaml").write_text(MINIMAL.replace("production\n", "prod\n"))
        with pytest.raises(SpecError) as caught:
            load_spec_file("conveyor.yaml")
        assert caught.value.problems[0].file == "conveyor.yaml"
        Path("conveyor.yaml").write_text(render_init("shop"))
        assert load_spec_file(Path("conveyor.yaml")).project == "shop"

    def test_a_missing_file(self, tmp_path: Path) -> None:
        missing = tmp_path / "conveyor.yaml"
        with pytest.raises(SpecError) as caught:
            load_spec_file(missing)
        problem = caught.value.problems[0]
        assert (problem.file, problem.message, problem.hint) == (
            str(missing),
            f"{missing} does not exist",
            "run `conveyor init` to create one",
        )

    def test_a_directory(self, tmp_path: Path) -> None:
        with pytest.raises(SpecError, match="is a directory"):
            load_spec_file(tmp_path)

    @pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
    def test_an_unreadable_file(self, tmp_path: Path) -> None:
        path = tmp_path / "conveyor.yaml"
        path.write_text(MINIMAL)
        path.chmod(0)
        with pytest.raises(SpecError, match="permission denied"):
            load_spec_file(path)

    def test_not_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "conveyor.yaml"
        path.write_bytes(b"project: demo\nowner: caf\xe9\n")
        with pytest.raises(SpecError) as caught:
            load_spec_file(path)
        assert (caught.value.problems[0].line, caught.value.problems[0].hint) == (2, "save the file as UTF-8")

    def test_a_byte_order_mark_is_fine(self, tmp_path: Path) -> None:
        path = tmp_path / "conveyor.yaml"
        path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
        assert load_spec_file(path).project == "demo"


_YAML_PIECES = st.sampled_from(
    [
        "project: demo\n",
        "environments:\n",
        "  production:\n",
        "    tier: production\n",
        "  dev: {tier: x}\n",
        "    approvals: {required: two}\n",
        "pipeline: [a]\n",
        "- item\n",
        "  - {a: 1}\n",
        "key: [1, 2\n",
        ": :\n",
        "    strategy: {type: canary, steps: [{weight: 50%}, {weight: 10%}]}\n",
        "\t\n",
        "&a x: *a\n",
        "'\n",
        "roles: {admin: []}\n",
        "    config: {A: {B: 1}}\n",
        "<<: 5\n",
        "? [1]\n: 2\n",
        "    secrets: {X: 1}\n",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_YAML_PIECES, max_size=8).map("".join) | st.text(max_size=80))
def test_any_text_gives_a_spec_or_a_spec_error(text: str) -> None:
    try:
        load_spec_text(text)
    except SpecError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.message and problem.file == "conveyor.yaml"
            assert problem.line is None or problem.line >= 1


_TEMPLATE_LINES = render_init("shop", {"qa", "dr"}).splitlines()
_ODD_VALUES = st.sampled_from(
    ["", "null", "[]", "{}", "-1", "two", "1%", "5m", "[a, b]", "{a: 1}", "true", "0x10"]
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, len(_TEMPLATE_LINES) - 1), max_size=6),
    st.lists(st.tuples(st.integers(0, len(_TEMPLATE_LINES) - 1), _ODD_VALUES), max_size=6),
)
def test_a_damaged_template_gives_a_spec_or_positioned_problems(
    drop: list[int], edits: list[tuple[int, str]]
) -> None:
    lines = list(_TEMPLATE_LINES)
    for index, value in edits:
        key, colon, _ = lines[index].partition(": ")
        if colon and not key.lstrip().startswith("#"):
            lines[index] = f"{key}: {value}"
    text = "\n".join(line for index, line in enumerate(lines) if index not in set(drop))
    try:
        load_spec_text(text)
    except SpecError as error:
        assert error.problems
        assert all(problem.line is not None and problem.line >= 1 for problem in error.problems)
