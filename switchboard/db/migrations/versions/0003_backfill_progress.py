"""backfill_jobs: trigger, pages (the compare-and-set version) and missing ids

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("backfill_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trigger", sa.String(length=16), server_default="manual", nullable=False))
        batch_op.add_column(sa.Column("pages", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("missing_ids", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("backfill_jobs", schema=None) as batch_op:
        batch_op.drop_column("missing_ids")
        batch_op.drop_column("pages")
        batch_op.drop_column("trigger")
