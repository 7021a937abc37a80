"""What runs in an environment, as desired states (a leaf module: resources and migrations read it)."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor.runtime.desired import EnvironmentDesired
from conveyor.store.tables import Deployment, Rollout

__all__ = ["desired_in_use"]


def desired_in_use(session: Session, environment: str) -> list[EnvironmentDesired]:
    """What runs (or is being applied) in `environment`: the current release, any deployment still
    being applied, and the stable release a rollout keeps running beside or after the new one."""
    texts = [
        session.execute(
            select(Deployment.desired)
            .where(Deployment.environment == environment, Deployment.state == "applied")
            .order_by(Deployment.id.desc())
            .limit(1)
        ).scalar_one_or_none()
    ]
    texts += session.execute(
        select(Deployment.desired).where(
            Deployment.environment == environment, Deployment.state == "applying"
        )
    ).scalars()
    texts += session.execute(
        select(Rollout.stable_desired).where(
            Rollout.environment == environment,
            Rollout.phase.in_(("preview", "progressing", "hot", "standby")),
        )
    ).scalars()
    return [EnvironmentDesired.from_json(json.loads(text)) for text in texts if text]
