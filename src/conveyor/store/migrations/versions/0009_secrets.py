"""Secrets per environment: one row per version, each value sealed with its own data key (ADR 0010).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secret_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("ciphertext", sa.Text, nullable=True),
        sa.Column("wrapped_key", sa.Text, nullable=True),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("expires_at", sa.String(32), nullable=True),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("destroyed_at", sa.String(32), nullable=True),
        sa.UniqueConstraint("environment", "name", "version", name="uq_secret_versions_version"),
    )
    op.create_index("ix_secret_versions_env_name", "secret_versions", ["environment", "name"])


def downgrade() -> None:
    op.drop_index("ix_secret_versions_env_name", table_name="secret_versions")
    op.drop_table("secret_versions")
