"""A deployable service: how to start it, how to tell it is healthy, and the settings it reads."""

from __future__ import annotations

import shlex
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PrivateAttr, WithJsonSchema, model_validator

from conveyor.spec.data import ServiceData
from conveyor.spec.fields import Issue, Label, SpecModel, Text, invalid, raise_issues
from conveyor.spec.migrations import Migrations
from conveyor.spec.settings import ConfigName, ConfigSetting, SecretName
from conveyor.spec.types import Duration, show


def _url_path(value: str) -> str:
    if not value.startswith("/"):
        raise invalid(f"'{value}' is not a URL path", f"start it with a slash: /{value}")
    return value


UrlPath = Annotated[str, AfterValidator(_url_path), Label("URL path")]


def _split_command(value: Any) -> Any:
    if isinstance(value, str):
        try:
            parts = shlex.split(value)
        except ValueError as exc:
            raise invalid(f"cannot split the command: {exc}", "check its quotes") from None
        if not parts:
            raise invalid("the command is empty", "write the program and its arguments, like python app.py")
        return parts
    if isinstance(value, list) and not value:
        raise invalid("the command is empty", "write the program and its arguments, like python app.py")
    if not isinstance(value, list):
        raise invalid(f"expected a command line, got {show(value)}", "write it like python app.py")
    return value


Command = Annotated[
    list[Text],
    BeforeValidator(_split_command),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
    Label("command line"),
]


class HealthCheck(SpecModel):
    """How the supervisor and the router tell that an instance is ready and well."""

    path: UrlPath = "/healthz"
    """HTTP path that answers 2xx when the instance is healthy."""
    interval: Duration = Duration.of(seconds=10)
    """Time between checks."""
    timeout: Duration = Duration.of(seconds=2)
    """A check slower than this fails."""
    healthy_threshold: Annotated[int, Field(ge=1)] = 1
    """Passing checks in a row before an instance receives traffic."""
    unhealthy_threshold: Annotated[int, Field(ge=1)] = 3
    """Failing checks in a row before an instance is restarted."""

    @model_validator(mode="after")
    def _timeout_fits_interval(self) -> HealthCheck:
        if self.timeout >= self.interval:
            raise_issues(
                [
                    Issue(
                        ("timeout",),
                        f"timeout {self.timeout} is not shorter than interval {self.interval}",
                        "a check must finish before the next one starts",
                    )
                ]
            )
        return self


class Service(SpecModel):
    """A deployable app; every environment runs the services declared here."""

    command: Command | None = None
    """Program and arguments that start one instance (split like a shell would; no shell runs it)."""
    image: Text | None = None
    """OCI image to run instead of a command (Kubernetes runtime)."""
    port_env: ConfigName = "PORT"
    """Environment variable through which the instance learns the port to listen on."""
    health: HealthCheck = HealthCheck()
    """Health check."""
    version_path: UrlPath | None = None
    """HTTP path that reports the running version; smoke gates compare it with the artifact's."""
    config_schema: dict[ConfigName, ConfigSetting] = Field(default_factory=dict)
    """Settings the service reads; environments' `config` values are checked against them."""
    secrets: list[SecretName] = Field(default_factory=list)
    """Secrets the service needs; every environment must declare them under `secrets`."""
    migrations: Migrations | None = None
    """Schema migrations shipped in the artifact and run before its instances start (ADR 0014)."""
    data: ServiceData = ServiceData()
    """Personal columns of the service's tables, their masking rules and subsetting (masked clones)."""

    _name: str = PrivateAttr(default="")

    @property
    def name(self) -> str:
        """The service's name (its key under `services`)."""
        return self._name

    @model_validator(mode="after")
    def _startable(self) -> Service:
        if self.command is None and self.image is None:
            raise_issues(
                [
                    Issue(
                        ("command",),
                        "a service needs a command or an image",
                        "add command: (how to start it from a bundle) or image: (an OCI image)",
                    )
                ]
            )
        return self
