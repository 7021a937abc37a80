"""conveyor.yaml → typed, validated models; canonical documents, diffs, the init template and the schema.

spec = load_spec_file("conveyor.yaml")        # raises SpecError listing every problem
spec.environments["production"].access.deploy  # roles allowed to deploy there
plan = summarize_plan(diff_documents(old_document, spec.to_document()))
"""

from conveyor.spec.diff import Change, Plan, apply_changes, diff_documents, summarize_plan
from conveyor.spec.environment import Environment
from conveyor.spec.loader import load_spec_file, load_spec_text
from conveyor.spec.models import Pipeline, Role, Spec, Stage
from conveyor.spec.schema import json_schema
from conveyor.spec.service import Service
from conveyor.spec.template import render_init
from conveyor.spec.types import Duration, Money, Percent, Size

__all__ = [
    "Change",
    "Duration",
    "Environment",
    "Money",
    "Percent",
    "Pipeline",
    "Plan",
    "Role",
    "Service",
    "Size",
    "Spec",
    "Stage",
    "apply_changes",
    "diff_documents",
    "json_schema",
    "load_spec_file",
    "load_spec_text",
    "render_init",
    "summarize_plan",
]
