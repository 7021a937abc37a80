"""Feature flags per environment, stored in flagd's JSON shape (`conveyor flag set`).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feature_flags",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.UniqueConstraint("environment", "key", name="uq_feature_flags_key"),
    )


def downgrade() -> None:
    op.drop_table("feature_flags")
