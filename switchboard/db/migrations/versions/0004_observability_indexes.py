"""observability indexes: the dashboard's runs filter by insight kind, covering indexes of the
chart queries (runs by time with status and usage, steps by time with agent and latency), and a
run's approvals

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 12:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agent_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agent_runs_insight_kind_created_at"), ["insight_kind", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_agent_runs_created_at_usage",
            ["created_at", "status", "tokens_in", "tokens_out", "cost_usd"],
            unique=False,
        )
    with op.batch_alter_table("agent_steps", schema=None) as batch_op:
        batch_op.create_index("ix_agent_steps_started_at_latency", ["started_at", "agent", "latency_ms"], unique=False)
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_approvals_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_approvals_run_id"))
    with op.batch_alter_table("agent_steps", schema=None) as batch_op:
        batch_op.drop_index("ix_agent_steps_started_at_latency")
    with op.batch_alter_table("agent_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_agent_runs_created_at_usage")
        batch_op.drop_index(batch_op.f("ix_agent_runs_insight_kind_created_at"))
