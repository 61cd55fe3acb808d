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

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("proactive_insights", schema=None) as batch_op:
        batch_op.add_column(sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("acknowledged_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("snoozed_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))
    op.create_index("ix_source_records_object_id", "source_records", ["object_id"])


def downgrade() -> None:
    op.drop_index("ix_source_records_object_id", table_name="source_records")
    with op.batch_alter_table("proactive_insights", schema=None) as batch_op:
        batch_op.drop_column("note")
        batch_op.drop_column("snoozed_until")
        batch_op.drop_column("acknowledged_by")
        batch_op.drop_column("acknowledged_at")
