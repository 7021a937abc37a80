"""Feature flags per environment: list and change them (audited, delivered at once), flagd JSON, OFREP.

Every change commits first, then the environment's flagd document goes to the runtime; when the
runtime is unreachable the response says delivery is pending (the next change or deployment
delivers it). Applications read the flagd file the runtime writes, or evaluate here through the
OpenFeature Remote Evaluation Protocol (OFREP) under `/api/v1/environments/{name}/ofrep/`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from conveyor.api.deps import AppState, AuditDep, StateDep, guarded, guarded_environment
from conveyor.environments.service import get_environment
from conveyor.errors import InvalidRequest
from conveyor.flags import service as flags
from conveyor.flags.evaluate import Resolution, evaluate_all
from conveyor.flags.targeting import parse_condition

router = APIRouter(tags=["flags"])

Reason = Field("", max_length=2000, description="why (kept in the audit log)")


class SetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    definition: dict[str, Any] | None = Field(
        None, description="a whole flagd flag: state, variants, defaultVariant, targeting, metadata"
    )
    on: bool | None = Field(None, description="a boolean flag whose default is on (true) or off (false)")
    variants: dict[str, Any] | None = Field(None, description="variant name → value (one type)")
    default: str | None = Field(None, max_length=128, description="the default variant")
    reason: str = Reason


class RolloutBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    percent: float | None = Field(
        ...,
        description="percent (0–100) of targeting keys that get the variant; null removes the rollout",
    )
    variant: str | None = Field(
        None, max_length=128, description="the variant rolled out (default: the true / first other variant)"
    )
    reason: str = Reason


class RuleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    when: str | None = Field(
        None, max_length=2000, description="a condition like `email ends_with @example.com and plan == pro`"
    )
    condition: dict[str, Any] | None = Field(None, description="the condition as a JsonLogic rule")
    variant: str = Field(..., max_length=128, description="the variant served when the condition holds")
    reason: str = Reason


class ReasonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Reason


class ImportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    document: dict[str, Any] = Field(..., description='a flagd JSON document ({"flags": {...}})')
    reason: str = Reason


class OfrepRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    context: dict[str, Any] = Field(
        default_factory=dict, description="evaluation context; targetingKey inside"
    )


def _changed(state: AppState, name: str, flag: flags.StoredFlag | None) -> dict[str, Any]:
    """The response to a change: the flag as stored, and whether running instances have it yet."""
    delivery = flags.deliver(state.store, state.driver, name)
    return {"environment": name, "flag": flag.to_json() if flag else None, "delivery": delivery}


@router.get("/api/v1/environments/{name}/flags", **guarded("environments:read"))
def list_flags(name: str, state: StateDep) -> dict[str, Any]:
    """The environment's flags: state, variants, default, targeting, who changed each last and why."""
    with state.store.read() as session:
        get_environment(session, name)
        rows = flags.list_flags(session, name)
    return {"environment": name, "flags": [r.to_json() for r in rows]}


@router.get("/api/v1/environments/{name}/flags/flagd.json", **guarded("environments:read"))
def flagd_document(name: str, state: StateDep) -> dict[str, Any]:
    """The environment's flags as a flagd JSON document (what OpenFeature's flagd providers read)."""
    with state.store.read() as session:
        get_environment(session, name)
        return flags.flagd_document(session, name)


@router.post("/api/v1/environments/{name}/flags/import", **guarded_environment("config"))
def import_flags(name: str, body: ImportBody, state: StateDep, ctx: AuditDep) -> dict[str, Any]:
    """Create or replace every flag of a flagd document; nothing changes if any flag is invalid."""
    with state.store.write() as session:
        outcome = flags.import_document(session, ctx, name, body.document, body.reason, state.clock.now())
    return {**_changed(state, name, None), **outcome}


@router.get("/api/v1/environments/{name}/flags/{key}", **guarded("environments:read"))
def show_flag(name: str, key: str, state: StateDep) -> dict[str, Any]:
    """One flag, with who changed it last and why."""
    with state.store.read() as session:
        get_environment(session, name)
        return {"environment": name, "flag": flags.get_flag(session, name, key).to_json()}


@router.put("/api/v1/environments/{name}/flags/{key}", **guarded_environment("config"))
def set_flag(name: str, key: str, body: SetBody, state: StateDep, ctx: AuditDep) -> dict[str, Any]:
    """Create or change a flag: a whole definition, a boolean default (`on`), or variants and default."""
    changes = body.model_dump(exclude={"reason"}, exclude_none=True)
    with state.store.write() as session:
        stored, changed = flags.set_flag(session, ctx, name, key, body.reason, state.clock.now(), **changes)
    return {**_changed(state, name, stored), "changed": changed}


@router.put("/api/v1/environments/{name}/flags/{key}/rollout", **guarded_environment("config"))
def set_rollout(name: str, key: str, body: RolloutBody, state: StateDep, ctx: AuditDep) -> dict[str, Any]:
    """Serve a variant to a percentage of targeting keys (flagd `fractional`), the rest the default."""
    with state.store.write() as session:
        stored = flags.set_rollout(
            session, ctx, name, key, body.percent, body.variant, body.reason, state.clock.now()
        )
    return _changed(state, name, stored)


@router.post("/api/v1/environments/{name}/flags/{key}/rules", **guarded_environment("config"))
def add_rule(name: str, key: str, body: RuleBody, state: StateDep, ctx: AuditDep) -> dict[str, Any]:
    """Serve a variant when a condition on the context holds (rules apply in order, before a rollout)."""
    if (body.when is None) == (body.condition is None):
        raise InvalidRequest(
            "give the condition as `when` words or as a JsonLogic `condition`, one of them",
            hint='for example {"when": "email ends_with @example.com", "variant": "on"}',
        )
    condition = parse_condition(body.when) if body.when is not None else body.condition
    with state.store.write() as session:
        stored = flags.set_rule(
            session, ctx, name, key, condition, body.variant, body.reason, state.clock.now()
        )
    return _changed(state, name, stored)


@router.delete("/api/v1/environments/{name}/flags/{key}/rules", **guarded_environment("config"))
def clear_rules(
    name: str, key: str, state: StateDep, ctx: AuditDep, reason: str = Query("", max_length=2000)
) -> dict[str, Any]:
    """Remove a flag's rules (its rollout stays)."""
    with state.store.write() as session:
        stored = flags.set_rule(session, ctx, name, key, None, None, reason, state.clock.now())
    return _changed(state, name, stored)


@router.post("/api/v1/environments/{name}/flags/{key}/enable", **guarded_environment("config"))
def enable(name: str, key: str, body: ReasonBody, state: StateDep, ctx: AuditDep) -> dict[str, Any]:
    """Turn a flag on: it resolves through its targeting and default again."""
    with state.store.write() as session:
        stored = flags.set_state(session, ctx, name, key, True, body.reason, state.clock.now())
    return _changed(state, name, stored)


@router.post("/api/v1/environments/{name}/flags/{key}/disable", **guarded_environment("config"))
def disable(name: str, key: str, body: ReasonBody, state: StateDep, ctx: AuditDep) -> dict[str, Any]:
    """Turn a flag off: applications get reason DISABLED and use their own default value."""
    with state.store.write() as session:
        stored = flags.set_state(session, ctx, name, key, False, body.reason, state.clock.now())
    return _changed(state, name, stored)


@router.delete("/api/v1/environments/{name}/flags/{key}", **guarded_environment("config"))
def delete_flag(
    name: str, key: str, state: StateDep, ctx: AuditDep, reason: str = Query("", max_length=2000)
) -> dict[str, Any]:
    """Remove a flag; applications evaluating it get FLAG_NOT_FOUND and use their own default."""
    with state.store.write() as session:
        flags.delete_flag(session, ctx, name, key, reason, state.clock.now())
    return {**_changed(state, name, None), "deleted": key}


def _ofrep(resolution: Resolution) -> tuple[int, dict[str, Any]]:
    """OFREP's status and body for one resolution."""
    if resolution.error_code:
        body = {
            "key": resolution.key,
            "errorCode": resolution.error_code,
            "errorDetails": resolution.error_message,
        }
        return (404 if resolution.error_code == "FLAG_NOT_FOUND" else 400), body
    out: dict[str, Any] = {
        "key": resolution.key,
        "reason": resolution.reason,
        "metadata": dict(resolution.metadata),
    }
    if resolution.variant is not None:  # no value and no variant: the application uses its own default
        out["value"], out["variant"] = resolution.value, resolution.variant
    return 200, out


@router.post("/api/v1/environments/{name}/ofrep/v1/evaluate/flags/{key}", **guarded("environments:read"))
def ofrep_evaluate(name: str, key: str, state: StateDep, body: OfrepRequest | None = None) -> JSONResponse:
    """OFREP single-flag evaluation: the flag's value, variant and reason for the request's context."""
    context = body.context if body else {}
    with state.store.read() as session:
        get_environment(session, name)
        resolution = flags.evaluate_flag(session, name, key, context, state.clock.now())
    status, out = _ofrep(resolution)
    return JSONResponse(out, status_code=status)


@router.post("/api/v1/environments/{name}/ofrep/v1/evaluate/flags", **guarded("environments:read"))
def ofrep_evaluate_all(
    name: str, request: Request, state: StateDep, body: OfrepRequest | None = None
) -> Response:
    """OFREP bulk evaluation: every flag for the request's context, with an ETag (304 when unchanged)."""
    context = body.context if body else {}
    with state.store.read() as session:
        get_environment(session, name)
        document = flags.flagd_document(session, name)
    results = [_ofrep(r)[1] for r in evaluate_all(document, context, now=state.clock.now())]
    payload = json.dumps({"flags": results}, sort_keys=True, separators=(",", ":"))
    etag = '"' + hashlib.sha256(payload.encode()).hexdigest()[:32] + '"'
    if etag in {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers={"ETag": etag})
    return Response(payload, media_type="application/json", headers={"ETag": etag})
