"""Rollouts (weighted traffic steps of a promotion) and their analysis runs.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("promotion_id", sa.Integer, sa.ForeignKey("promotions.id"), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("new_version", sa.String(128), nullable=False),
        sa.Column("stable_version", sa.String(128), nullable=False),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("stable_desired", sa.Text, nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("applied", sa.String(24), nullable=True),
        sa.Column("step_started_at", sa.String(32), nullable=True),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("pause_reason", sa.Text, nullable=True),
        sa.Column("promote_requested", sa.Boolean, nullable=False),
        sa.Column("abort_requested", sa.Text, nullable=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("inconclusive", sa.Integer, nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("last_analysis_at", sa.String(32), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("started_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.Column("finished_at", sa.String(32), nullable=True),
        sa.Column("retire_at", sa.String(32), nullable=True),
        sa.UniqueConstraint("promotion_id", name="uq_rollouts_promotion"),
    )
    op.create_index("ix_rollouts_environment", "rollouts", ["environment", "id"])
    op.create_index("ix_rollouts_retire", "rollouts", ["phase", "retire_at"])
    op.create_table(
        "analysis_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("rollout_id", sa.Integer, sa.ForeignKey("rollouts.id"), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("weight_bp", sa.Integer, nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("window_s", sa.Float, nullable=False),
        sa.Column("numbers", sa.Text, nullable=False),
    )
    op.create_index("ix_analysis_runs_rollout_id", "analysis_runs", ["rollout_id", "id"])


def downgrade() -> None:
    op.drop_table("analysis_runs")
    op.drop_table("rollouts")
