"""The committed conveyor.yaml reference matches the models, and covers every key."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import get_args

from conveyor.spec.environment import Environment
from conveyor.spec.fields import SpecModel
from conveyor.spec.gates import GATE_MODELS
from conveyor.spec.models import Spec
from conveyor.spec.reference import main, render_reference

DOC = Path(__file__).resolve().parents[3] / "docs" / "reference" / "conveyor-yaml.md"


def test_the_committed_reference_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == render_reference(), (
        "regenerate it: python -m conveyor.spec.reference docs/reference/conveyor-yaml.md"
    )


def _all_models() -> list[type[SpecModel]]:
    found: list[type[SpecModel]] = []
    pending = list(SpecModel.__subclasses__())
    while pending:
        model = pending.pop()
        found.append(model)
        pending += model.__subclasses__()
    return [model for model in found if not model.__name__.startswith("_")]


def test_every_key_of_every_model_is_documented() -> None:
    text = render_reference()
    models = _all_models()
    assert {Spec, Environment, *GATE_MODELS} <= set(models)
    for model in models:
        section = text.split(f"\n{inspect.cleandoc(model.__doc__ or '')}\n", 1)
        assert len(section) == 2, f"{model.__name__} has no section"
        table = section[1].split("| key | type | default | description |", 1)[1].split("\n\n", 1)[0]
        for name in model.model_fields:
            assert f"| `{name}` |" in table, f"{model.__name__}.{name} is missing"
    for gate in GATE_MODELS:
        (gate_type,) = get_args(gate.model_fields["type"].annotation)
        assert f"(type: {gate_type})`" in text


def test_every_field_has_a_description() -> None:
    for line in render_reference().splitlines():
        if line.startswith("| `") and line.count("|") == 5:
            assert line.rstrip(" |").split("|")[-1].strip(), line


def test_main_writes_the_file(tmp_path: Path) -> None:
    target = tmp_path / "reference.md"
    assert main([str(target)]) == 0
    assert target.read_text(encoding="utf-8") == render_reference()
