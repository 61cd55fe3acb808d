"""model usage as billed: cache read and cache write tokens on steps and runs, a cost that may
be unknown (NULL, for a model missing from the price table), and the `deferred` tool-call
status (an overloaded model: the call waits without using an attempt)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 05:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from switchboard.db import adopt

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# SQLite's batch mode rebuilds agent_runs, which the view reads: it is dropped and made again.
RECENT_RUNS_VIEW = """
CREATE VIEW recent_agent_runs AS
SELECT id AS run_id, agent AS agent_type, task, insight_kind, latency_ms, status, error,
       provider, tokens_in, tokens_out, created_at
FROM agent_runs
ORDER BY created_at DESC
LIMIT 50
"""
OLD_STATUSES = "status IN ('pending', 'retrying', 'done', 'failed')"
NEW_STATUSES = "status IN ('pending', 'retrying', 'deferred', 'done', 'failed')"


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS recent_agent_runs")
    for table in ("agent_runs", "agent_steps"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("cache_read_tokens", sa.Integer(), nullable=False, server_default="0"))
            batch_op.add_column(sa.Column("cache_write_tokens", sa.Integer(), nullable=False, server_default="0"))
            batch_op.alter_column("cost_usd", existing_type=sa.Float(), nullable=True)
    op.execute(RECENT_RUNS_VIEW)
    adopt.replace_check(op, "agent_decisions", op.f("ck_agent_decisions_status"), NEW_STATUSES)


def downgrade() -> None:
    op.execute("UPDATE agent_decisions SET status = 'retrying' WHERE status = 'deferred'")
    adopt.replace_check(op, "agent_decisions", op.f("ck_agent_decisions_status"), OLD_STATUSES)
    op.execute("DROP VIEW IF EXISTS recent_agent_runs")
    for table in ("agent_runs", "agent_steps"):
        op.execute(f"UPDATE {table} SET cost_usd = 0 WHERE cost_usd IS NULL")
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("cost_usd", existing_type=sa.Float(), nullable=False)
            batch_op.drop_column("cache_write_tokens")
            batch_op.drop_column("cache_read_tokens")
    op.execute(RECENT_RUNS_VIEW)
