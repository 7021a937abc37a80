"""Configuration values and secret references of an environment, and the typed settings a service declares."""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field, PlainValidator, WithJsonSchema, model_validator

from conveyor.spec.fields import Issue, Label, SpecModel, Text, invalid, raise_issues
from conveyor.spec.types import Duration, ValueFormatError, show
from conveyor.spec.vocabulary import ConfigType, SecretKind

ScalarValue = str | int | float | bool

_VARIABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _variable_name(noun: str) -> Any:
    def check(value: str) -> str:
        if not _VARIABLE_RE.fullmatch(value):
            raise invalid(
                f"'{value}' is not a valid {noun}",
                "use letters, digits and underscores, like LOG_LEVEL (it becomes an environment variable)",
            )
        return value

    return AfterValidator(check)


ConfigName = Annotated[str, _variable_name("config name"), Label("variable name")]
SecretName = Annotated[str, _variable_name("secret name"), Label("variable name")]


def _config_value(value: Any) -> ScalarValue:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        raise invalid(f"{show(value)} is not a usable config value", "write a finite number")
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        raise invalid(
            "config values must be a string, number or true/false, not a mapping",
            "config is flat: give each setting its own key, like DB_POOL_SIZE: 20",
        )
    if isinstance(value, list):
        raise invalid(
            "config values must be a string, number or true/false, not a list",
            "join the items into one string, like 'a,b,c'",
        )
    if value is None:
        raise invalid(
            "a config value cannot be empty (null)", "write '' for an empty string, or remove the key"
        )
    raise invalid(f"config values must be a string, number or true/false, got {show(value)}")


ConfigValue = Annotated[
    ScalarValue,
    PlainValidator(_config_value),
    WithJsonSchema({"type": ["string", "number", "boolean"]}),
    Label("string, number or boolean"),
]

_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "duration": "a duration",
}


def type_mismatch(kind: str, value: ScalarValue) -> str | None:
    """Why `value` does not fit a setting of type `kind` (None when it fits)."""
    is_bool = isinstance(value, bool)
    fits = {
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not is_bool,
        "number": isinstance(value, int | float) and not is_bool,
        "boolean": is_bool,
        "duration": isinstance(value, str),
    }[kind]
    if fits and kind == "duration":
        try:
            Duration.parse(value)
        except ValueFormatError:
            fits = False
    return None if fits else f"expected {_TYPE_WORDS[kind]}, got {show(value)}"


class ConfigSetting(SpecModel):
    """One setting a service reads from its environment, with its type and default."""

    type: ConfigType = "string"
    """Type every value of the setting must have."""
    default: ConfigValue | None = None
    """Value used when an environment does not set it."""
    required: bool = False
    """Every environment must set it (only for settings without a default)."""
    choices: list[Text] = Field(default_factory=list)
    """Allowed values (string settings only)."""
    description: Text | None = None
    """What the setting does."""

    @model_validator(mode="after")
    def _default_fits(self) -> ConfigSetting:
        issues: list[Issue] = []
        if self.default is not None:
            mismatch = type_mismatch(self.type, self.default)
            if mismatch:
                issues.append(Issue(("default",), mismatch, f"the setting's type is {self.type}"))
            elif self.choices and self.default not in self.choices:
                issues.append(
                    Issue(("default",), f"default {show(self.default)} is not one of the choices", None)
                )
            if self.required:
                issues.append(
                    Issue(
                        ("required",),
                        "a setting with a default is never missing",
                        "remove required, or remove the default",
                        at_key=True,
                    )
                )
        if self.choices and self.type != "string":
            issues.append(
                Issue(
                    ("choices",),
                    "choices only apply to string settings",
                    "remove choices, or use type: string",
                )
            )
        raise_issues(issues)
        return self

    def problem_with(self, value: ScalarValue) -> str | None:
        """Why an environment's value does not fit this setting (None when it fits)."""
        mismatch = type_mismatch(self.type, value)
        if mismatch:
            return mismatch
        if self.choices and value not in self.choices:
            return f"{show(value)} is not one of {', '.join(self.choices)}"
        return None


_SECRET_HINT = "declare only kind and rotate_every here; store the value with `conveyor secret set`"


class SecretRef(SpecModel):
    """A reference to a secret kept encrypted by Conveyor; never the value itself."""

    shorthand: ClassVar[tuple[dict[str, Any], str] | None] = (
        {"type": "null"},
        "nothing (`API_KEY:`), short for a generic secret without rotation",
    )

    kind: SecretKind = "generic"
    """What the secret is; decides how it is generated and rotated."""
    rotate_every: Duration | None = None
    """Rotate the secret this often; null never rotates it."""
    description: Text | None = None
    """What the secret is for."""
    from_environment: Text | None = None
    """Use this secret's value from another environment, which must list this one in `share_with`."""
    share_with: list[Text] = Field(default_factory=list)
    """Environments that may use this secret's value; production and dr values never leave those tiers."""

    @model_validator(mode="before")
    @classmethod
    def _reference_not_value(cls, data: Any) -> Any:
        if data is None:
            return {}
        if isinstance(data, dict):
            if "value" in data:
                raise_issues(
                    [
                        Issue(
                            ("value",),
                            "a secret's value never goes in conveyor.yaml",
                            _SECRET_HINT,
                            at_key=True,
                        )
                    ]
                )
            return data
        if isinstance(data, str | int | float | bool):
            raise invalid(
                "secrets are references, not values: this looks like the secret itself", _SECRET_HINT
            )
        return data
