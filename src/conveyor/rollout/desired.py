"""Pure: the runtime's desired state at each point of a rollout, from the stable and the new release.

A release's recorded desired state runs one version at 100%. During a rollout the runtime gets both:
the stable version with its own configuration and the new one, weighted and sized for the step.
After the switch the old version stays `hot` (full size, no traffic), then on `standby` (kept, no
instances), then it is gone.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from conveyor.rollout.plan import RolloutPolicy, instances, weights
from conveyor.runtime.desired import EnvironmentDesired, VersionDesired

Retirement = Literal["hot", "standby", "retired"]


def main_version(desired: EnvironmentDesired) -> VersionDesired:
    """The version that carries a release's traffic (the heaviest one)."""
    return max(desired.versions, key=lambda v: v.weight_bp)


def at_step(
    stable: EnvironmentDesired, release: EnvironmentDesired, policy: RolloutPolicy, step: int
) -> EnvironmentDesired:
    """Both versions, weighted and sized for `step` (-1: the new version started with no public traffic)."""
    old, new = main_version(stable), main_version(release)
    new_bp, stable_bp = weights(policy, step)
    new_n, stable_n = instances(policy, step)
    versions = (
        replace(_own_config(old, stable), weight_bp=stable_bp, instances=stable_n, fault=None),
        replace(new, weight_bp=new_bp, instances=new_n, env=None, secrets=None),
    )
    return replace(release, versions=versions)


def retiring(
    stable: EnvironmentDesired, release: EnvironmentDesired, policy: RolloutPolicy, phase: Retirement
) -> EnvironmentDesired:
    """After the switch: the new version at 100%, the old one hot, on standby, or gone."""
    new = replace(main_version(release), instances=policy.instances, env=None, secrets=None)
    if phase == "retired":
        return replace(release, versions=(new,))
    old = main_version(stable)
    kept = policy.instances if phase == "hot" else 0
    old = replace(_own_config(old, stable), weight_bp=0, instances=kept, fault=None)
    return replace(release, versions=(old, new))


def _own_config(version: VersionDesired, release: EnvironmentDesired) -> VersionDesired:
    """The stable version carrying its own release's configuration and secrets, not the new one's."""
    return replace(
        version,
        env=version.env or dict(release.env),
        secrets=dict(release.secrets) if version.secrets is None else version.secrets,
    )


def first_retirement(policy: RolloutPolicy) -> Retirement:
    """Where the old version goes once the new one takes all traffic."""
    if policy.keep_hot_s > 0:
        return "hot"
    if policy.keep_standby_s > 0:
        return "standby"
    return "retired"


def following_retirement(policy: RolloutPolicy, phase: Retirement) -> Retirement:
    """Where the old version goes when `phase` is over (retired stays retired)."""
    if phase == "hot" and policy.keep_standby_s > 0:
        return "standby"
    return "retired"


def retirement_length(policy: RolloutPolicy, phase: Retirement) -> float:
    """How long the old version stays in `phase`, in seconds (0 once retired)."""
    return {"hot": policy.keep_hot_s, "standby": policy.keep_standby_s}.get(phase, 0.0)
