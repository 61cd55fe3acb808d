"""insight episodes: an anomaly is one insight until it clears (`cleared_at`, `cleared_by`), so
at most one uncleared insight per dedupe key — a finished one included, which a persisting
anomaly's next scan adds an occurrence to instead of opening a second episode

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 21:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from switchboard.db import adopt

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

OPEN = "status IN ('new', 'queued', 'running', 'awaiting_approval')"
UNCLEARED = "cleared_at IS NULL"


def upgrade() -> None:
    adopt.add_columns(op, "proactive_insights", sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
                      sa.Column("cleared_by", sa.String(length=64), nullable=True))  # fmt: skip
    # Insights that finished before episodes existed were closed episodes: keep them closed, so
    # the new index (one uncleared insight per dedupe key) holds for the rows already there.
    op.execute(f"UPDATE proactive_insights SET cleared_at = updated_at, cleared_by = 'migration' WHERE NOT ({OPEN})")
    with op.batch_alter_table("proactive_insights", schema=None) as batch_op:
        batch_op.drop_index("uq_proactive_insights_open_dedupe_key", postgresql_where=sa.text(OPEN),
                            sqlite_where=sa.text(OPEN))  # fmt: skip
        batch_op.create_index(
            "uq_proactive_insights_episode_dedupe_key",
            ["dedupe_key"],
            unique=True,
            postgresql_where=sa.text(UNCLEARED),
            sqlite_where=sa.text(UNCLEARED),
        )


def downgrade() -> None:
    with op.batch_alter_table("proactive_insights", schema=None) as batch_op:
        batch_op.drop_index("uq_proactive_insights_episode_dedupe_key", postgresql_where=sa.text(UNCLEARED),
                            sqlite_where=sa.text(UNCLEARED))  # fmt: skip
        batch_op.create_index(
            "uq_proactive_insights_open_dedupe_key",
            ["dedupe_key"],
            unique=True,
            postgresql_where=sa.text(OPEN),
            sqlite_where=sa.text(OPEN),
        )
    adopt.drop_columns(op, "proactive_insights", "cleared_by", "cleared_at")
