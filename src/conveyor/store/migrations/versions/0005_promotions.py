"""Promotions with leases, their transitions, gate runs and reviews; deployments know their promotion.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "promotions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("config_sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("requested_at", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("next_run_at", sa.String(32), nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", sa.String(32), nullable=True),
        sa.Column("step_token", sa.Integer, nullable=False),
        sa.Column("override_by", sa.String(64), nullable=True),
        sa.Column("override_reason", sa.Text, nullable=True),
        sa.Column("deployment_id", sa.Integer, nullable=True),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.Column("finished_at", sa.String(32), nullable=True),
    )
    op.create_index("ix_promotions_due", "promotions", ["state", "next_run_at"])
    op.create_index("ix_promotions_environment", "promotions", ["environment", "state"])
    op.create_table(
        "promotion_transitions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("promotion_id", sa.Integer, sa.ForeignKey("promotions.id"), nullable=False),
        sa.Column("from_state", sa.String(24), nullable=True),
        sa.Column("to_state", sa.String(24), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_promotion_transitions_promotion_id", "promotion_transitions", ["promotion_id"])
    op.create_table(
        "gate_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("promotion_id", sa.Integer, sa.ForeignKey("promotions.id"), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", sa.String(32), nullable=False),
        sa.Column("finished_at", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("requested_by", sa.String(64), nullable=True),
        sa.UniqueConstraint("promotion_id", "name", "attempt", name="uq_gate_runs_attempt"),
    )
    op.create_index("ix_gate_runs_promotion_id", "gate_runs", ["promotion_id"])
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("promotion_id", sa.Integer, sa.ForeignKey("promotions.id"), nullable=False),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("release", sa.String(160), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.UniqueConstraint("promotion_id", "user", "release", name="uq_reviews_person_release"),
    )
    op.create_index("ix_reviews_promotion_id", "reviews", ["promotion_id"])
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("promotion_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("step_token", sa.Integer, nullable=True))
        batch.create_unique_constraint("uq_deployments_promotion_step", ["promotion_id", "step_token"])


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_constraint("uq_deployments_promotion_step", type_="unique")
        batch.drop_column("step_token")
        batch.drop_column("promotion_id")
    for table in ("reviews", "gate_runs", "promotion_transitions", "promotions"):
        op.drop_table(table)
