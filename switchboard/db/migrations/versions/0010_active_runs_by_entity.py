"""the orchestrator's per-entity concurrency check, run on every pass, finds an entity's
insights and their active runs by index; without these it scanned both tables, so every pass
(the immediate trigger for a critical insight included) grew slower with the history kept

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 10:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ACTIVE = "status IN ('queued', 'running', 'retrying')"


def upgrade() -> None:
    with op.batch_alter_table("proactive_insights", schema=None) as batch_op:
        batch_op.create_index(
            "ix_proactive_insights_source_entity_type_entity_id", ["source", "entity_type", "entity_id"], unique=False
        )
    with op.batch_alter_table("agent_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_agent_runs_active_insight_id",
            ["insight_id"],
            unique=False,
            postgresql_where=sa.text(ACTIVE),
            sqlite_where=sa.text(ACTIVE),
        )


def downgrade() -> None:
    with op.batch_alter_table("agent_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_agent_runs_active_insight_id")
    with op.batch_alter_table("proactive_insights", schema=None) as batch_op:
        batch_op.drop_index("ix_proactive_insights_source_entity_type_entity_id")
