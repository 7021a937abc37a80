"""Deployments keep the exact desired state they applied, so rollback and redeploy replay it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="deploy"))
        batch.add_column(sa.Column("desired", sa.Text, nullable=True))
        batch.add_column(sa.Column("finished_at", sa.String(32), nullable=True))
        batch.add_column(sa.Column("error", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        for column in ("error", "finished_at", "desired", "kind"):
            batch.drop_column(column)
