"""The CI examples work: examples/ci/release.sh releases to a real server, and the GitHub Actions
workflow parses and calls only `conveyor` commands and options that exist.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from ruamel.yaml import YAML

from conveyor.cli.main import app
from tests.conftest import ROOT, Server, free_port

EXAMPLES = ROOT / "examples/ci"
SPEC = """
version: 1
project: shop
roles:
  ci: [artifacts:read, artifacts:write, promotions:read]
services:
  web:
    command: python app.py
    version_path: /version
    health: {{path: /healthz, interval: 1s, timeout: 500ms}}
environments:
  development:
    tier: development
    access: {{deploy: [developer, release-manager]}}
    router: {{port: {dev}}}
  staging:
    tier: staging
    access: {{deploy: [ci, release-manager]}}
    promotion:
      gates:
        - {{type: tests, reports: [unit]}}
        - {{type: scan, fail_on: high, reports: [sast]}}
        - {{type: command, name: integration, run: {integration}, when: after}}
        - {{type: smoke}}
    router: {{port: {staging}}}
  production:
    tier: production
    access: {{deploy: [release-manager]}}
    approvals: {{required: 2, approver_roles: [release-manager]}}
    promotion:
      gates:
        - {{type: previous-stage}}
        - {{type: smoke}}
    router: {{port: {production}}}
pipeline:
  stages:
    - {{environment: development, optional: true}}
    - staging
    - production
"""
# what GitHub Actions sets in every job; the CLI turns it into the artifact's provenance
GITHUB_ENV = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SHA": "3f2a9c1d4b5e6f708192a3b4c5d6e7f8091a2b3c",
    "GITHUB_REF_NAME": "main",
    "GITHUB_WORKFLOW": "release",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "shop/web",
    "GITHUB_RUN_ID": "4242",
}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_release_script_registers_with_provenance_and_promotes_to_staging(
    server: Server, tmp_path: Path
) -> None:
    ports = {"dev": free_port(), "staging": free_port(), "production": free_port()}
    project = server.home.parent
    integration = json.dumps(f"{sys.executable} check_deployed.py")  # JSON is valid YAML
    (project / "conveyor.yaml").write_text(SPEC.format(integration=integration, **ports))
    server.cli("apply", "--yes", check=True)
    shutil.copy(ROOT / "examples/app/check_deployed.py", project)  # the integration gate's script
    with server.admin() as http:
        created = http.post("/api/v1/users", json={"name": "ci", "role": "ci"})
        assert created.status_code == 201, created.text
        token = created.json()["token"]["token"]

    env = {
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "CONVEYOR_HOME": str(tmp_path / "no-home"),  # nothing but the URL and the token
        "CONVEYOR_URL": server.url,
        "CONVEYOR_TOKEN": token,
        "SERVICE": "web",
        "VERSION": "1.4.0",
        "APP_DIR": str(ROOT / "examples/app"),
        "PROMOTE_TO": "staging",
        "SARIF": str(ROOT / "examples/reports/web-sast.sarif"),
        "WAIT": "120",
        "OUT_DIR": str(tmp_path / "dist"),
        "NO_COLOR": "1",
        "COLUMNS": "200",
        **GITHUB_ENV,
    }
    run = subprocess.run(
        ["/bin/sh", str(EXAMPLES / "release.sh")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    assert "promotion 1 is succeeded" in run.stdout
    assert (tmp_path / "dist/web-1.4.0.tar.gz").is_file()

    with server.admin() as http:
        artifact = http.get("/api/v1/artifacts/web/1.4.0").json()
        promotion = http.get("/api/v1/promotions/1").json()
    assert artifact["registered_by"] == "ci"
    assert artifact["provenance"] == {
        "source_commit": GITHUB_ENV["GITHUB_SHA"],
        "source_branch": "main",
        "build_url": "https://github.com/shop/web/actions/runs/4242",
        "builder": "github-actions:release",
    }
    reports = {(a["kind"], a["name"]): a["summary"] for a in artifact["attachments"]}
    assert set(reports) == {("junit", "unit"), ("sarif", "sast")}
    assert reports[("junit", "unit")]["tests"] > 0 and reports[("junit", "unit")]["failures"] == 0
    assert artifact["deployed_in"] == ["staging"]

    assert (promotion["environment"], promotion["state"], promotion["requested_by"]) == (
        "staging",
        "succeeded",
        "ci",
    )
    assert promotion["digest"] == artifact["digest"]
    assert {g["name"]: g["state"] for g in promotion["gates"]} == {
        "tests": "passed",
        "scan": "passed",
        "integration": "passed",
        "smoke": "passed",
    }


# -- the workflow only calls commands that exist ----------------------------------------------


def _command_lines(script: str) -> Iterator[list[str]]:
    """Each `conveyor …` invocation in a shell script, as words (continuation lines joined)."""
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
        for start, word in enumerate(words):
            if word == "conveyor":
                end = next(
                    (
                        i
                        for i in range(start + 1, len(words))
                        if words[i] in ("&&", "||", ";", "|", ">", "(", ")")
                    ),
                    len(words),
                )
                yield words[start + 1 : end]


def _resolve(words: list[str]) -> tuple[Any, list[str]]:
    """The CLI command `words` name (walking the typer app's groups), and the words after its path."""
    command: Any = typer.main.get_command(app)
    rest = list(words)
    while getattr(command, "commands", None) and rest and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
    return command, rest


def _check(words: list[str]) -> str:
    """The command path `words` call; fails unless the command and every option it uses exist."""
    command, rest = _resolve(words)
    path = " ".join(words[: len(words) - len(rest)])
    assert not getattr(command, "commands", None), f"`conveyor {' '.join(words)}` names no command"
    options = {opt for param in command.params for opt in param.opts}
    for word in rest:
        if word.startswith("-"):
            assert word.split("=")[0] in options, f"`conveyor {path}` has no option {word}"
    return path


def test_the_workflow_parses_and_calls_only_existing_commands() -> None:
    workflow = YAML(typ="safe").load((EXAMPLES / "github-actions.yml").read_text())
    assert set(workflow["on"]) == {"push", "workflow_dispatch"}
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    calls = [words for step in steps if "run" in step for words in _command_lines(step["run"])]
    assert [_check(words) for words in calls] == ["artifact register", "artifact show", "promote"]


def test_the_release_script_calls_only_existing_commands() -> None:
    script = (EXAMPLES / "release.sh").read_text()
    calls = list(_command_lines(script))
    assert [_check(words) for words in calls] == ["artifact register", "artifact show", "promote"]


@pytest.mark.parametrize("line", ["conveyor promotion frobnicate 3", "conveyor promote web 1.0.0 --too x"])
def test_the_command_check_catches_mistakes(line: str) -> None:
    with pytest.raises(AssertionError):
        for words in _command_lines(line):
            _check(words)


def test_the_release_script_parses_as_posix_sh() -> None:
    shell = shutil.which("dash") or "/bin/sh"  # dash knows no bash extensions
    out = subprocess.run([shell, "-n", str(EXAMPLES / "release.sh")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
