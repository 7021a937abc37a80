"""The example app's small evaluator (it may not import Conveyor) answers as Conveyor's evaluator does."""

from __future__ import annotations

import importlib.util
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from conveyor.flags.evaluate import evaluate
from conveyor.flags.targeting import Chain, Rollout
from tests.conftest import ROOT
from tests.unit.flags.schema import FIXTURES

T0 = datetime(2026, 11, 29, tzinfo=UTC)


def example_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_app", ROOT / "examples/app/app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_app_buckets_rules_and_defaults_like_conveyor(tmp_path: Path) -> None:
    chain = Chain().with_rule({"ends_with": [{"var": "email"}, "@example.com"]}, "on")
    chain = chain.with_rollout(Rollout((("on", 2500), ("off", 7500))))
    document = {
        "flags": {
            "new-checkout": {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": "off",
                "targeting": chain.to_targeting(),
            }
        }
    }
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(document))
    app = example_app().Flags(str(path))
    for i in range(500):
        context: dict[str, Any] = {
            "targetingKey": f"user-{i}",
            "email": f"u{i}@{'example.com' if i % 7 else 'x.org'}",
        }
        ours = evaluate(document, "new-checkout", context, now=T0)
        theirs = app.resolve("new-checkout", context)
        assert (theirs["value"], theirs["variant"], theirs["reason"]) == (
            ours.value,
            ours.variant,
            ours.reason,
        )


def test_the_app_rereads_the_file_when_it_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    app = example_app().Flags(str(path))
    assert app.resolve("isColorYellow", {})["reason"] == "FLAG_NOT_FOUND"  # no file yet: no flags
    path.write_text((FIXTURES / "example.flagd.json").read_text())
    time.sleep(0.25)  # the app looks at the file at most every 200 ms
    assert app.resolve("isColorYellow", {"color": "yellow"})["value"] is True
    assert app.resolve("myStringFlag", {}) == {
        "key": "myStringFlag",
        "value": "val1",
        "variant": "key1",
        "reason": "STATIC",
    }
    flipped = json.loads(path.read_text())
    flipped["flags"]["myStringFlag"]["state"] = "DISABLED"
    staged = tmp_path / "staged.json"
    staged.write_text(json.dumps(flipped))
    staged.replace(path)  # atomically, as the agent writes it
    time.sleep(0.25)
    assert app.resolve("myStringFlag", {})["reason"] == "DISABLED"
