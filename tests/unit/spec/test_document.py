"""The canonical document: defaults filled, canonical spellings, equal for equal meaning, lossless."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from conveyor.errors import SpecError
from conveyor.spec import Spec, load_spec_text, render_init
from conveyor.spec.types import Duration
from tests.unit.spec.helpers import yaml

TERSE = yaml(
    """
    project: demo
    environments:
      staging:
        tier: staging
        scale: {instances: 2}
        strategy: {type: bluegreen, steps: [{weight: 10%, pause: 90m}]}
        approvals: {expires_after: 24h}
        budget: {monthly: 500}
        secrets: {API_KEY: }
      production: {tier: production, uptime_sla: 99.90%}
    pipeline:
      stages: [staging, production]
    """
)

VERBOSE = yaml(
    """
    version: 1
    project: demo
    roles: {}
    services: {}
    environments:
      staging:
        tier: staging
        secrets:
          API_KEY: {kind: generic}
        budget:
          monthly: "$500"
          alert_at: 80%
        approvals:
          required: 0
          expires_after: 1d
        strategy:
          type: bluegreen
          steps:
            - {weight: 10%, pause: 1h30m}
            - {weight: 100%}
        scale:
          instances: {min: 2, max: 2}
      production:
        uptime_sla: 99.9%
        tier: production
    pipeline:
      stages:
        - {environment: staging}
        - {environment: production, optional: false}
    """
)


def test_files_that_mean_the_same_give_the_same_document() -> None:
    terse, verbose = load_spec_text(TERSE), load_spec_text(VERBOSE)
    assert terse.to_document() == verbose.to_document()
    assert terse.digest() == verbose.digest()
    assert json.dumps(terse.to_document()) == json.dumps(verbose.to_document())


def test_the_document_spells_values_canonically_and_fills_defaults() -> None:
    document = load_spec_text(TERSE).to_document()
    staging = document["environments"]["staging"]
    assert staging["strategy"]["steps"] == [
        {"weight": "10%", "pause": "1h30m", "manual": False},
        {"weight": "100%", "pause": None, "manual": False},
    ]
    assert staging["approvals"] == {
        "required": 0,
        "approver_roles": [],
        "approvers": [],
        "allow_self_approval": False,
        "expires_after": "1d",
    }
    assert staging["budget"] == {"monthly": "$500", "alert_at": "80%"}
    assert staging["scale"]["instances"] == {"min": 2, "max": 2}
    assert staging["secrets"] == {
        "API_KEY": {
            "kind": "generic",
            "rotate_every": None,
            "description": None,
            "from_environment": None,
            "share_with": [],
        }
    }
    assert document["pipeline"]["stages"][0] == {"environment": "staging", "optional": False}
    assert list(document) == [
        "version",
        "project",
        "roles",
        "services",
        "signing",
        "environments",
        "pipeline",
    ]
    assert json.loads(json.dumps(document)) == document


def test_a_different_meaning_gives_a_different_digest() -> None:
    assert load_spec_text(TERSE).digest() != load_spec_text(TERSE.replace("90m", "91m")).digest()


def test_environments_keep_file_order_and_know_their_names() -> None:
    spec = load_spec_text(render_init("shop", {"qa", "dr", "preview"}))
    assert list(spec.environments) == ["development", "qa", "staging", "production", "dr", "preview"]
    assert list(load_spec_text(render_init("shop")).environments) == ["development", "staging", "production"]
    assert [env.name for env in spec.environments.values()] == list(spec.environments)
    assert spec.environments["qa"].tier == "testing"


def test_from_document_rejects_an_invalid_document_with_paths() -> None:
    document = load_spec_text(TERSE).to_document()
    document["environments"]["staging"]["tier"] = "stagng"
    with pytest.raises(SpecError) as caught:
        Spec.from_document(document)
    problem = caught.value.problems[0]
    assert (problem.file, problem.path, problem.line) == ("<document>", "environments.staging.tier", None)
    assert problem.hint == "did you mean 'staging'?"


def test_role_table_applies_the_files_roles() -> None:
    spec = load_spec_text(TERSE + "roles:\n  viewer: [status:read]\n  auditor: {permissions: [audit:read]}\n")
    table = spec.role_table()
    assert table["viewer"] == frozenset({"status:read"})
    assert table["auditor"] == frozenset({"audit:read"})
    assert table["admin"] == frozenset({"*"})
    assert "spec:apply" in table["release-manager"]


# -- property: any valid document survives the round trip, through Python and through YAML text --

_NAMES = st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True)
_DURATIONS = st.integers(min_value=0, max_value=10**11).map(lambda ms: str(Duration(ms)))
_SPELT_DURATIONS = _DURATIONS | st.sampled_from(["90m", "24h", "2w", "1y", "500ms", "3600s"])
_PERCENTS = st.decimals(min_value=0, max_value=100, places=2).map(lambda d: f"{d}%")
# ruamel's dumper mangles control characters and line separators, so the YAML leg leaves them out
_TEXT = st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=12)
_SCALARS = (
    _TEXT
    | st.integers(min_value=-(10**9), max_value=10**9)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.booleans()
)
_VARIABLES = st.from_regex(r"[A-Z][A-Z0-9_]{0,8}", fullmatch=True)
_TIERS = ["development", "testing", "staging", "production", "dr"]


@st.composite
def _strategies(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["recreate", "bluegreen", "canary"]))
    if kind == "recreate":
        return {"type": "recreate", "auto_rollback": draw(st.booleans())}
    weights = draw(st.lists(st.integers(min_value=1, max_value=100), unique=True, max_size=5))
    steps = [{"weight": f"{w}%", "pause": draw(st.none() | _SPELT_DURATIONS)} for w in sorted(weights)]
    return {"type": kind, "steps": steps, "keep_old": {"hot": draw(_DURATIONS), "standby": draw(_DURATIONS)}}


@st.composite
def _environments(draw: st.DrawFn, tier: str, port: int) -> dict[str, Any]:
    environment: dict[str, Any] = {"tier": tier, "router": {"port": port}}
    if draw(st.booleans()):
        environment["purpose"] = draw(_TEXT.filter(str.strip))
    environment["strategy"] = draw(_strategies())
    environment["config"] = draw(st.dictionaries(_VARIABLES, _SCALARS, max_size=4))
    environment["secrets"] = draw(
        st.dictionaries(
            _VARIABLES,
            st.fixed_dictionaries(
                {
                    "kind": st.sampled_from(["api-key", "signing-key", "generic"]),
                    "rotate_every": st.none() | _DURATIONS,
                }
            ),
            max_size=3,
        )
    )
    required = draw(st.integers(min_value=0, max_value=3))
    environment["approvals"] = {
        "required": required,
        "approver_roles": ["release-manager"] if required else [],
        "expires_after": draw(_SPELT_DURATIONS),
    }
    environment["scale"] = {
        "expected_rps": draw(st.none() | st.integers(min_value=1, max_value=10**6)),
        "instances": draw(st.integers(min_value=1, max_value=9)),
    }
    environment["slos"] = {
        "availability": draw(st.none() | _PERCENTS),
        "error_rate": draw(st.none() | _PERCENTS),
    }
    if draw(st.booleans()):
        environment["budget"] = {"monthly": draw(st.integers(min_value=0, max_value=10**6))}
    if draw(st.booleans()):
        environment["logs"] = {
            "retention": draw(_SPELT_DURATIONS),
            "size": f"{draw(st.integers(0, 10**4))}GB",
        }
    if tier not in ("production", "dr") and draw(st.booleans()):
        environment["ttl"] = draw(_SPELT_DURATIONS)
    return environment


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """Valid conveyor.yaml documents, written with varied spellings and shorthands."""
    names = draw(st.lists(_NAMES, min_size=1, max_size=4, unique=True))
    tiers = sorted(
        draw(st.lists(st.sampled_from(_TIERS), min_size=len(names), max_size=len(names))), key=_TIERS.index
    )
    environments = {
        name: draw(_environments(tier, 8000 + index))
        for index, (name, tier) in enumerate(zip(names, tiers, strict=True))
    }
    return {"project": draw(_NAMES), "environments": environments}


def _to_yaml(document: dict[str, Any]) -> str:
    buffer = io.StringIO()
    YAML().dump(document, buffer)
    return buffer.getvalue()


@settings(max_examples=80, deadline=None)
@given(documents())
def test_documents_round_trip(document: dict[str, Any]) -> None:
    canonical = Spec.from_document(document).to_document()
    assert Spec.from_document(canonical).to_document() == canonical
    assert load_spec_text(_to_yaml(document)).to_document() == canonical
    assert load_spec_text(_to_yaml(canonical)).to_document() == canonical
