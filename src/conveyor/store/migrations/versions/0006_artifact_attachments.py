"""Artifact attachments: SARIF scan reports, JUnit test reports and Ed25519 signatures.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifact_attachments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("artifact_id", sa.Integer, sa.ForeignKey("artifacts.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("attached_at", sa.String(32), nullable=False),
        sa.Column("attached_by", sa.String(64), nullable=False),
        sa.UniqueConstraint("artifact_id", "kind", "name", name="uq_artifact_attachments_kind_name"),
    )
    op.create_index("ix_artifact_attachments_artifact_id", "artifact_attachments", ["artifact_id"])


def downgrade() -> None:
    op.drop_table("artifact_attachments")
