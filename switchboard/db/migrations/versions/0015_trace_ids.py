"""traces: the trace id of each run (`agent_runs.trace_id`: the run page links to it, and the
logs carry it), and the W3C `traceparent` of the span that raised each insight
(`proactive_insights.traceparent`), so its run continues that trace

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 15:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from switchboard.db import adopt
from switchboard.db.models import RECENT_RUNS_VIEW_SQL

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agent_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trace_id", sa.String(length=32), nullable=True))
    adopt.add_columns(op, "proactive_insights", sa.Column("traceparent", sa.String(length=55), nullable=True))


def downgrade() -> None:
    adopt.drop_columns(op, "proactive_insights", "traceparent")
    # SQLite's batch mode rebuilds agent_runs, which the view reads: it is dropped and made again
    # (on PostgreSQL the column drops in place and the view, with its security_invoker, stays)
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("DROP VIEW IF EXISTS recent_agent_runs")
    with op.batch_alter_table("agent_runs", schema=None) as batch_op:
        batch_op.drop_column("trace_id")
    if sqlite:
        op.execute(RECENT_RUNS_VIEW_SQL)
