"""backfill_jobs: trigger, pages (the compare-and-set version) and missing ids; entity_links

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

    op.create_table(
        "entity_links",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("from_source", sa.String(length=32), nullable=False),
        sa.Column("from_type", sa.String(length=64), nullable=False),
        sa.Column("from_id", sa.String(length=255), nullable=False),
        sa.Column("to_source", sa.String(length=32), nullable=False),
        sa.Column("to_type", sa.String(length=64), nullable=False),
        sa.Column("to_id", sa.String(length=255), nullable=False),
        sa.Column("match", sa.String(length=32), nullable=False),
        sa.Column("evidence", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entity_links")),
        sa.UniqueConstraint(
            "from_source", "from_type", "from_id", "to_source", "to_type", "to_id", name="uq_entity_links_pair"
        ),
    )
    with op.batch_alter_table("entity_links", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_entity_links_to_source_to_type_to_id"), ["to_source", "to_type", "to_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("entity_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_entity_links_to_source_to_type_to_id"))
    op.drop_table("entity_links")

    with op.batch_alter_table("backfill_jobs", schema=None) as batch_op:
        batch_op.drop_column("missing_ids")
        batch_op.drop_column("pages")
        batch_op.drop_column("trigger")
