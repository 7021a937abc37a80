"""Artifact provenance (source commit, branch, build URL, builder) and OCI image references.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("artifacts") as batch:
        batch.add_column(sa.Column("image", sa.String(512), nullable=True))
        batch.add_column(sa.Column("source_commit", sa.String(64), nullable=True))
        batch.add_column(sa.Column("source_branch", sa.String(255), nullable=True))
        batch.add_column(sa.Column("build_url", sa.String(1024), nullable=True))
        batch.add_column(sa.Column("builder", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("artifacts") as batch:
        for column in ("builder", "build_url", "source_branch", "source_commit", "image"):
            batch.drop_column(column)
