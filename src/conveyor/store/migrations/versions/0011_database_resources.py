"""PostgreSQL databases provisioned per environment, and which login role a password version sets.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "database_resources",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("environment", sa.String(64), nullable=False, unique=True),
        sa.Column("server", sa.Text, nullable=False),
        sa.Column("database", sa.String(63), nullable=False),
        sa.Column("owner_role", sa.String(63), nullable=False),
        sa.Column("provisioned_by", sa.String(64), nullable=False),
        sa.Column("provisioned_at", sa.String(32), nullable=False),
    )
    with op.batch_alter_table("secret_versions") as batch:
        batch.add_column(sa.Column("binding", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("secret_versions") as batch:
        batch.drop_column("binding")
    op.drop_table("database_resources")
