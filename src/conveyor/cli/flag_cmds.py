"""`conveyor flag …`: feature flags per environment, changed at run time and read by apps as flagd JSON."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import typer

from conveyor.cli.common import api
from conveyor.cli.output import Output, OutputOption, console, print_json, print_table, short_time
from conveyor.errors import ClientError, ConveyorError

app = typer.Typer(
    help="Feature flags per environment: on/off and variants, targeting rules, percentage rollouts. "
    "Changes reach running instances within seconds, without a redeploy.",
    no_args_is_help=True,
)

EnvArg = typer.Argument(..., help="environment name")
NameArg = typer.Argument(..., help="flag key, like new-checkout")
ReasonOption = typer.Option("", "--reason", "-m", help="why (kept in the audit log)")


def _scalar(text: str) -> Any:
    """A typed value: JSON when it reads as JSON (1, 2.5, true, {"a": 1}), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


# a comma starts a new pair only where NAME= follows, so a value may hold commas ({"a": 1, "b": 2})
_PAIR_SEPARATOR = re.compile(r",(?=\s*[^,=\s\"{}\[\]]+=)")


def _pairs(items: list[str], what: str, example: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        for part in _PAIR_SEPARATOR.split(item):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ClientError(f"'{part}' is not NAME=VALUE in {what}", hint=f"for example: {example}")
            values[key.strip()] = _scalar(value.strip())
    return values


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ClientError(f"{path} is not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClientError(
            f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}",
            hint="a flag definition is JSON, as `conveyor flag export` writes it",
        ) from None


def _summary(flag: dict[str, Any]) -> str:
    default = flag.get("defaultVariant")
    serves = f"{default} = {json.dumps(flag['variants'][default])}" if default else "the app's own default"
    parts = [flag["state"].lower(), f"default {serves}"]
    if flag.get("custom_targeting"):
        parts.append("custom targeting")
    if flag.get("rules"):
        parts.append(f"{flag['rules']} rule(s)")
    if flag.get("rollout"):
        parts.append("rollout " + ", ".join(f"{v} {p:g}%" for v, p in flag["rollout"].items()))
    return "; ".join(parts)


def _report(data: dict[str, Any], output: Output, what: str) -> None:
    if output is Output.json:
        print_json(data)
        return
    flag = data.get("flag")
    line = f"{data['environment']}: {what}"
    console.print(f"{line} ({_summary(flag)})" if flag else line, markup=False)
    delivery = data["delivery"]
    if delivery["delivered"]:
        console.print("running instances read it within seconds; nothing restarts", markup=False)
    else:
        console.print(
            f"stored, but delivery to running instances is pending ({delivery['error']}); "
            "the next flag change or deployment of the environment delivers it",
            markup=False,
        )


@app.command("list")
def list_flags(ctx: typer.Context, env: str = EnvArg, output: Output = OutputOption) -> None:
    """The environment's flags: state, default, rules, rollout, last change."""
    with api(ctx) as client:
        data = client.get(f"/api/v1/environments/{env}/flags")
    if output is Output.json:
        print_json(data)
        return
    if not data["flags"]:
        console.print(
            f"{env} has no flags; create one with `conveyor flag set {env} NAME --on`", markup=False
        )
        return
    rows = [
        [f["key"], f["kind"], _summary(f), f["updated_by"], short_time(f["updated_at"]), f["reason"] or None]
        for f in data["flags"]
    ]
    print_table(f"Feature flags of {env}", ["flag", "type", "serves", "by", "at", "reason"], rows)


@app.command("show")
def show(ctx: typer.Context, env: str = EnvArg, name: str = NameArg, output: Output = OutputOption) -> None:
    """One flag's definition (flagd JSON) and its last change."""
    with api(ctx) as client:
        data = client.get(f"/api/v1/environments/{env}/flags/{name}")
    if output is Output.json:
        print_json(data)
        return
    flag = data["flag"]
    console.print(f"{env} / {flag['key']}: {_summary(flag)}", markup=False)
    console.print(
        f"last changed by {flag['updated_by']} at {short_time(flag['updated_at'])}"
        + (f": {flag['reason']}" if flag["reason"] else ""),
        markup=False,
    )
    definition = {
        k: flag[k] for k in ("state", "variants", "defaultVariant", "targeting", "metadata") if k in flag
    }
    print_json(definition)


@app.command("set")
def set_flag(
    ctx: typer.Context,
    env: str = EnvArg,
    name: str = NameArg,
    on: bool = typer.Option(
        None, "--on/--off", help="a boolean flag that serves true (--on) or false (--off)"
    ),
    variants: list[str] = typer.Option(
        None, "--variants", help='named values of one type: a=1,b=2 (JSON values: 1, true, "x", {...})'
    ),
    default: str = typer.Option(None, "--default", help="the variant served when no rule or rollout applies"),
    file: Path = typer.Option(
        None, "--file", "-f", help="a whole flag definition (flagd JSON)", dir_okay=False
    ),
    reason: str = ReasonOption,
    output: Output = OutputOption,
) -> None:
    """Create or change a flag. It reaches running instances within seconds, without a redeploy."""
    body: dict[str, Any] = {"reason": reason}
    if file is not None:
        definition = _read_json(file)
        if isinstance(definition, dict) and "flags" in definition:
            raise ClientError(
                f"{file} is a whole flagd document, not one flag",
                hint=f"import it with `conveyor flag import {env} {file}`",
            )
        body["definition"] = definition
    if on is not None:
        body["on"] = on
    if variants:
        body["variants"] = _pairs(variants, "--variants", '--variants red="#f00",blue="#00f" --default red')
    if default is not None:
        body["default"] = default
    with api(ctx) as client:
        data = client.request("PUT", f"/api/v1/environments/{env}/flags/{name}", json=body)
    _report(data, output, f"flag {name} set" if data.get("changed", True) else f"flag {name} unchanged")


@app.command("rollout")
def rollout(
    ctx: typer.Context,
    env: str = EnvArg,
    name: str = NameArg,
    percent: float = typer.Argument(None, help="share of users (targeting keys) that get the variant, 0–100"),
    variant: str = typer.Option(
        None, "--variant", help="the variant rolled out (default: the true variant, or the first non-default)"
    ),
    clear: bool = typer.Option(False, "--clear", help="remove the rollout: everyone gets the default again"),
    reason: str = ReasonOption,
    output: Output = OutputOption,
) -> None:
    """Serve a variant to PERCENT of users, the default to the rest (sticky per targeting key)."""
    if clear == (percent is not None):
        raise ClientError(
            "give a PERCENT or --clear, one of them", hint=f"conveyor flag rollout {env} {name} 10"
        )
    body = {"percent": None if clear else percent, "variant": variant, "reason": reason}
    with api(ctx) as client:
        data = client.request("PUT", f"/api/v1/environments/{env}/flags/{name}/rollout", json=body)
    _report(data, output, f"rollout of {name} removed" if clear else f"{name} rolled out to {percent:g}%")


@app.command("target")
def target(
    ctx: typer.Context,
    env: str = EnvArg,
    name: str = NameArg,
    when: str = typer.Option(
        None,
        "--when",
        help="the condition: ATTRIBUTE OPERATOR VALUE [and ...], e.g. 'email ends_with @example.com'; "
        "operators == != < <= > >= in not_in starts_with ends_with contains; or a JsonLogic JSON object",
    ),
    variant: str = typer.Option(None, "--variant", help="the variant served when the condition holds"),
    clear: bool = typer.Option(False, "--clear", help="remove every rule of the flag (a rollout stays)"),
    reason: str = ReasonOption,
    output: Output = OutputOption,
) -> None:
    """Serve a variant to whoever matches a condition. Rules apply in order, before any rollout."""
    path = f"/api/v1/environments/{env}/flags/{name}/rules"
    with api(ctx) as client:
        if clear:
            if when is not None or variant is not None:
                raise ClientError("--clear removes every rule; it takes no --when or --variant")
            data = client.delete(path, params={"reason": reason})
        else:
            if when is None or variant is None:
                raise ClientError(
                    "a rule needs --when and --variant",
                    hint=f"conveyor flag target {env} {name} --when 'plan == pro' --variant on",
                )
            data = client.post(path, json={"when": when, "variant": variant, "reason": reason})
    _report(data, output, f"rules of {name} removed" if clear else f"{name} serves {variant} when {when}")


@app.command("enable")
def enable(
    ctx: typer.Context,
    env: str = EnvArg,
    name: str = NameArg,
    reason: str = ReasonOption,
    output: Output = OutputOption,
) -> None:
    """Turn a flag on: it resolves through its rules, rollout and default again."""
    with api(ctx) as client:
        data = client.post(f"/api/v1/environments/{env}/flags/{name}/enable", json={"reason": reason})
    _report(data, output, f"flag {name} enabled")


@app.command("disable")
def disable(
    ctx: typer.Context,
    env: str = EnvArg,
    name: str = NameArg,
    reason: str = ReasonOption,
    output: Output = OutputOption,
) -> None:
    """Turn a flag off: apps get reason DISABLED and use the default written in their code."""
    with api(ctx) as client:
        data = client.post(f"/api/v1/environments/{env}/flags/{name}/disable", json={"reason": reason})
    _report(data, output, f"flag {name} disabled")


@app.command("delete")
def delete(
    ctx: typer.Context,
    env: str = EnvArg,
    name: str = NameArg,
    reason: str = ReasonOption,
    output: Output = OutputOption,
) -> None:
    """Remove a flag; apps evaluating it get FLAG_NOT_FOUND and use their own default."""
    with api(ctx) as client:
        data = client.delete(f"/api/v1/environments/{env}/flags/{name}", params={"reason": reason})
    _report(data, output, f"flag {name} deleted")


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    env: str = EnvArg,
    name: str = NameArg,
    context: list[str] = typer.Option(
        None,
        "--context",
        "-c",
        help="evaluation context, KEY=VALUE (repeat or comma-separate); "
        "targetingKey=... is the user rollouts bucket by",
    ),
    output: Output = OutputOption,
) -> None:
    """What a flag resolves to for a context, as an application asking over OFREP would see it."""
    values = _pairs(context or [], "--context", "--context targetingKey=user-42,email=ana@example.com")
    try:
        with api(ctx) as client:
            data = client.post(
                f"/api/v1/environments/{env}/ofrep/v1/evaluate/flags/{name}", json={"context": values}
            )
    except ConveyorError as exc:
        code = exc.extra.get("errorCode")
        if code is None:
            raise
        raise ClientError(
            f"{exc.extra.get('errorDetails') or name} ({code})",
            hint=f"see the flags of {env} with `conveyor flag list {env}`",
        ) from None
    if output is Output.json:
        print_json(data)
        return
    if "value" not in data:
        console.print(
            f"{name}: no value ({data['reason']}): the application uses its own default", markup=False
        )
        return
    console.print(
        f"{name} = {json.dumps(data['value'])} (variant {data['variant']}, {data['reason']})", markup=False
    )


@app.command("export")
def export(
    ctx: typer.Context,
    env: str = EnvArg,
    file: Path = typer.Option(
        None, "--file", "-f", help="write here instead of standard output", dir_okay=False
    ),
) -> None:
    """The environment's flags as a flagd JSON document (what OpenFeature's flagd providers read)."""
    with api(ctx) as client:
        data = client.get(f"/api/v1/environments/{env}/flags/flagd.json")
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if file is None:
        sys.stdout.write(text)
        return
    file.write_text(text)
    console.print(f"{len(data['flags'])} flag(s) of {env} written to {file}", markup=False)


@app.command("import")
def import_flags(
    ctx: typer.Context,
    env: str = EnvArg,
    file: Path = typer.Argument(..., help="a flagd JSON document", dir_okay=False),
    reason: str = ReasonOption,
    output: Output = OutputOption,
) -> None:
    """Create or replace the flags of a flagd file; a bad file changes nothing and says what is wrong.

    $evaluators are inlined into the flags that use them; flags not in the file are kept.
    """
    document = _read_json(file)
    with api(ctx) as client:
        data = client.post(
            f"/api/v1/environments/{env}/flags/import", json={"document": document, "reason": reason}
        )
    if output is Output.json:
        print_json(data)
        return
    counts = ", ".join(f"{len(data[k])} {k}" for k in ("created", "changed", "unchanged"))
    _report({**data, "flag": None}, output, f"imported {file} ({counts})")


def register(root: typer.Typer) -> None:
    """Add `conveyor flag …` to the root app."""
    root.add_typer(app, name="flag")
