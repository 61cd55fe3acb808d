"""insights an operator works: acknowledged (by, at), snoozed until a time, and a note (why it
was resolved, snoozed or acknowledged). The orchestrator claims no snoozed or resolved insight.
And source records by object id alone: the run page opens the records an analysis cites.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 11:55:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from switchboard.db import adopt

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    adopt.add_columns(
        op,
        "proactive_insights",
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.Column("snoozed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_index("ix_source_records_object_id", "source_records", ["object_id"])


def downgrade() -> None:
    op.drop_index("ix_source_records_object_id", table_name="source_records")
    adopt.drop_columns(op, "proactive_insights", "note", "snoozed_until", "acknowledged_by", "acknowledged_at")
