"""The whole conveyor.yaml as one typed model, `Spec`; `validate_spec` builds it or lists every problem."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from conveyor.auth.permissions import role_permissions
from conveyor.errors import NotFound, SpecError, SpecProblem
from conveyor.spec.checks import spec_issues
from conveyor.spec.environment import Environment
from conveyor.spec.fields import (
    EnvironmentName,
    Issue,
    Label,
    Permission,
    ProjectName,
    RoleName,
    ServiceName,
    SpecModel,
    Text,
    context_for,
    did_you_mean,
    environment_ref,
    raise_issues,
)
from conveyor.spec.problems import path_text, problems_from_validation, sort_problems
from conveyor.spec.service import Service
from conveyor.spec.signing import Signing

DOCUMENT_FILE = "<document>"


class Role(SpecModel):
    """A role's server-wide permissions; a bare list is short for `permissions:`."""

    shorthand: ClassVar[tuple[dict[str, Any], str] | None] = (
        {"type": "array", "items": {"type": "string"}},
        "a list of permissions, short for `{permissions: [...]}`",
    )

    description: Text | None = None
    """What the role is for."""
    permissions: list[Permission]
    """Global permissions the role holds (see the permission list below); `*` holds all."""

    @model_validator(mode="before")
    @classmethod
    def _list_means_permissions(cls, data: Any) -> Any:
        return {"permissions": data} if isinstance(data, list) else data


class Stage(SpecModel):
    """One stage of the pipeline; a bare environment name is short for `{environment: name}`."""

    shorthand: ClassVar[tuple[dict[str, Any], str] | None] = (
        {"type": "string"},
        "an environment name, short for `{environment: name}`",
    )

    environment: Annotated[str, environment_ref("pipeline stage"), Label("environment name")]
    """Environment this stage deploys to."""
    optional: bool = False
    """A release may skip this stage."""

    @model_validator(mode="before")
    @classmethod
    def _name_means_environment(cls, data: Any) -> Any:
        return {"environment": data} if isinstance(data, str) else data


class Pipeline(SpecModel):
    """The order in which an artifact moves through the environments."""

    stages: list[Stage]
    """Stages from first to last; a release cannot skip a stage unless it is optional."""


def is_extension_key(key: Any) -> bool:
    """Top-level `x-…` keys are ignored, so a file can hold YAML anchors to reuse (`x-common: &common`)."""
    return isinstance(key, str) and key.startswith("x-")


class Spec(SpecModel):
    """A validated conveyor.yaml: environments and their policies, services, roles and the pipeline.

    Top-level keys starting with `x-` are ignored; use them to hold YAML anchors you reuse.
    """

    derived_defaults: ClassVar[dict[str, str]] = {
        "pipeline": "every environment except previews, in the order written"
    }

    version: Literal[1] = 1
    """Format version of this file."""
    project: ProjectName
    """Name of the project."""
    roles: dict[RoleName, Role] = Field(default_factory=dict)
    """Replace a built-in role's global permissions, or add roles; admin always holds every permission."""
    services: dict[ServiceName, Service] = Field(default_factory=dict)
    """Deployable services, by name."""
    signing: Signing = Signing()
    """Keys whose artifact signatures are trusted (see `promotion.require_signature`)."""
    environments: Annotated[dict[EnvironmentName, Environment], Field(min_length=1)]
    """Environments, by name, in the order written."""
    pipeline: Pipeline
    """Stage order; defaults to every non-preview environment in the order written."""

    @model_validator(mode="before")
    @classmethod
    def _drop_extensions_and_default_pipeline(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = {key: value for key, value in data.items() if not is_extension_key(key)}
        if "pipeline" not in data:
            environments = data.get("environments")
            stages = [
                name
                for name, env in (environments.items() if isinstance(environments, dict) else ())
                if not (isinstance(env, dict) and env.get("tier") == "preview")
            ]
            data["pipeline"] = {"stages": stages}
        return data

    @field_validator("roles")
    @classmethod
    def _admin_is_fixed(cls, roles: dict[str, Role]) -> dict[str, Role]:
        if "admin" in roles:
            raise_issues(
                [
                    Issue(
                        ("admin",),
                        "the admin role cannot be changed",
                        "admin always holds every permission; define a new role instead",
                        at_key=True,
                    )
                ]
            )
        return roles

    @model_validator(mode="after")
    def _name_and_cross_check(self) -> Spec:
        for name, environment in self.environments.items():
            environment._name = name
        for name, service in self.services.items():
            service._name = name
        raise_issues(spec_issues(self))
        return self

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Spec:
        """Rebuild a spec from `to_document()` output (or any mapping); raises SpecError when invalid."""
        return validate_spec(document, file=DOCUMENT_FILE)

    def to_document(self) -> dict[str, Any]:
        """The canonical JSON-ready form: defaults filled in, values in their canonical spelling."""
        return self.model_dump(mode="json")

    def digest(self) -> str:
        """`sha256:…` of the canonical document; equal for files that mean the same."""
        body = json.dumps(self.to_document(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(body.encode()).hexdigest()

    def role_table(self) -> dict[str, frozenset[str]]:
        """Every role's global permissions: the built-in roles with this file's `roles:` applied."""
        return role_permissions({name: role.permissions for name, role in self.roles.items()})

    def environment(self, name: str) -> Environment:
        """The environment `name`; NotFound naming the declared ones (or the close match)."""
        found = self.environments.get(name)
        if found is None:
            raise NotFound(
                f"environment '{name}' is not in the applied conveyor.yaml",
                hint=did_you_mean(name, self.environments, "environments"),
            )
        return found

    def service(self, name: str) -> Service:
        """The service `name`; NotFound naming the declared ones (or the close match)."""
        found = self.services.get(name)
        if found is None:
            raise NotFound(
                f"service '{name}' is not in the applied conveyor.yaml",
                hint=did_you_mean(name, self.services, "services"),
            )
        return found

    def pipeline_order(self) -> list[str]:
        """Environment names of the pipeline stages, first to last."""
        return [stage.environment for stage in self.pipeline.stages]

    def previous_stage(self, environment: str) -> str | None:
        """The stage before `environment` in the pipeline (None for the first stage or a non-stage)."""
        order = self.pipeline_order()
        if environment not in order:
            return None
        index = order.index(environment)
        return order[index - 1] if index else None


def validate_spec(
    data: Any, *, file: str, positions: Any = None, found: list[SpecProblem] | None = None
) -> Spec:
    """Build a Spec from parsed data or raise SpecError with every problem (plus those already `found`)."""
    problems = list(found or [])
    spec: Spec | None = None
    try:
        spec = Spec.model_validate(data, context=context_for(data))
    except ValidationError as exc:
        try:
            problems += problems_from_validation(
                exc, model=Spec, data=data if positions is None else positions, file=file
            )
        except Exception:  # a bug in translating must not hide the user's mistakes behind a traceback
            problems += [
                SpecProblem(file, None, None, path_text(err["loc"]), err["msg"])
                for err in exc.errors(include_url=False)
            ]
    if problems or spec is None:
        raise SpecError(sort_problems(problems))
    return spec
