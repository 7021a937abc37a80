"""Backups of environment databases, and the restores and restore drills made from them (ADR 0016).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backups",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("server", sa.Text, nullable=False),
        sa.Column("database", sa.String(63), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("file", sa.Text, nullable=True),
        sa.Column("size_bytes", sa.BigInteger, nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("tables", sa.Text, nullable=True),
        sa.Column("constraints", sa.Text, nullable=True),
        sa.Column("server_version", sa.String(64), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("started_at", sa.String(32), nullable=False),
        sa.Column("heartbeat_at", sa.String(32), nullable=False),
        sa.Column("finished_at", sa.String(32), nullable=True),
        sa.Column("duration_s", sa.Float, nullable=True),
    )
    op.create_index("ix_backups_environment", "backups", ["environment", "started_at"])
    op.create_table(
        "restore_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("backup_id", sa.Integer, nullable=False),
        sa.Column("source_environment", sa.String(64), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("server", sa.Text, nullable=False),
        sa.Column("database", sa.String(63), nullable=False),
        sa.Column("scratch_database", sa.String(63), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("safety_backup_id", sa.Integer, nullable=True),
        sa.Column("sessions_ended", sa.Integer, nullable=True),
        sa.Column("restore_s", sa.Float, nullable=True),
        sa.Column("rto_s", sa.Float, nullable=True),
        sa.Column("rto_met", sa.Boolean, nullable=True),
        sa.Column("backup_age_s", sa.Float, nullable=True),
        sa.Column("rpo_s", sa.Float, nullable=True),
        sa.Column("rpo_met", sa.Boolean, nullable=True),
        sa.Column("checks", sa.Text, nullable=True),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("started_at", sa.String(32), nullable=False),
        sa.Column("heartbeat_at", sa.String(32), nullable=False),
        sa.Column("finished_at", sa.String(32), nullable=True),
        sa.Column("duration_s", sa.Float, nullable=True),
    )
    op.create_index("ix_restore_runs_environment", "restore_runs", ["environment", "kind", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_restore_runs_environment", table_name="restore_runs")
    op.drop_table("restore_runs")
    op.drop_index("ix_backups_environment", table_name="backups")
    op.drop_table("backups")
