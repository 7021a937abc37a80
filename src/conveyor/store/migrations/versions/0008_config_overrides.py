"""Runtime configuration overrides per environment (`conveyor config set`).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "config_overrides",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("set_by", sa.String(64), nullable=False),
        sa.Column("set_at", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.UniqueConstraint("environment", "key", name="uq_config_overrides_key"),
    )


def downgrade() -> None:
    op.drop_table("config_overrides")
