"""entity_links: cross-system links found by enrichment (customer ↔ contact/company, call ↔ deal)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 02:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "entity_links",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("from_kind", sa.String(length=64), nullable=False),
        sa.Column("from_id", sa.String(length=255), nullable=False),
        sa.Column("to_kind", sa.String(length=64), nullable=False),
        sa.Column("to_id", sa.String(length=255), nullable=False),
        sa.Column("link_type", sa.String(length=32), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column(
            "evidence", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entity_links")),
        sa.UniqueConstraint(
            "from_kind",
            "from_id",
            "to_kind",
            "to_id",
            "link_type",
            name=op.f("uq_entity_links_from_kind_from_id_to_kind_to_id_link_type"),
        ),
    )
    with op.batch_alter_table("entity_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_entity_links_to_kind_to_id"), ["to_kind", "to_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("entity_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_entity_links_to_kind_to_id"))
    op.drop_table("entity_links")
