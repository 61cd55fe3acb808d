"""row-level security on every table Switchboard owns (PostgreSQL): on Supabase the Data API
reaches the public schema as `anon` and `authenticated`, whose default grants would otherwise
let any holder of the project's public key read Stripe objects, runs and approvals. With RLS
enabled and no policy, those roles read nothing; the table owner that migrates and runs
Switchboard (or a role with BYPASSRLS, such as Supabase's service role) is not affected. The
`recent_agent_runs` view checks the caller's rights (security_invoker) instead of its owner's.
Tables a later migration adds enable it in that migration; the suite checks every table.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 12:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from switchboard.db import adopt

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TABLES = (
    "knowledge_base", "agent_conversations", "agent_decisions", "proactive_insights", "agent_context", "events",
    "agent_runs", "agent_steps", "backfill_jobs", "eval_runs", "eval_results", "approvals", "action_executions",
    "source_records", "dead_letters", "entity_links", "alembic_version",
)  # fmt: skip


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(sa.text(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY'))
    if int(bind.execute(sa.text("SHOW server_version_num")).scalar_one()) >= 150000:
        op.execute(sa.text("ALTER VIEW recent_agent_runs SET (security_invoker = true)"))
    else:  # before PostgreSQL 15 a view runs with its owner's rights: nobody else gets it
        op.execute(sa.text("REVOKE ALL ON recent_agent_runs FROM PUBLIC"))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    if int(bind.execute(sa.text("SHOW server_version_num")).scalar_one()) >= 150000:
        op.execute(sa.text("ALTER VIEW recent_agent_runs RESET (security_invoker)"))
    for table in TABLES:
        if not adopt.adopted(bind, table):  # an adopted table keeps it: off would open it to the Data API
            op.execute(sa.text(f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY'))
