"""open insights by source, oldest first: the Watcher step ranks its alert among them on every
run; without it, each step sorted every open insight of the source

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 03:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OPEN = "status IN ('new', 'queued', 'running', 'awaiting_approval')"


def upgrade() -> None:
    with op.batch_alter_table("proactive_insights", schema=None) as batch_op:
        batch_op.create_index(
            "ix_proactive_insights_open_source_created_at",
            ["source", "created_at"],
            unique=False,
            postgresql_where=sa.text(OPEN),
            sqlite_where=sa.text(OPEN),
        )


def downgrade() -> None:
    with op.batch_alter_table("proactive_insights", schema=None) as batch_op:
        batch_op.drop_index("ix_proactive_insights_open_source_created_at")
