"""adopting an existing schema: the ledger of what was there before Switchboard
(`switchboard_adopted`, for databases migrated before 0001 wrote it) under row-level security,
and insights that cannot be run as the contracts say (legacy rows of an adopted
`proactive_insights`) set aside with the reason in `quarantine_reason`

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 14:00:00.000000
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

from switchboard.db import adopt
from switchboard.db.runs import QUARANTINE, unfit

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

insights = sa.table(
    "proactive_insights",
    *(sa.column(name) for name in ("id", "status", "severity", "source", "cleared_by", "quarantine_reason")),
    sa.column("payload", sa.JSON()),
    sa.column("cleared_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    bind = op.get_bind()
    adopt.ensure_ledger(bind)
    if bind.dialect.name == "postgresql":
        op.execute(sa.text(f'ALTER TABLE "{adopt.LEDGER}" ENABLE ROW LEVEL SECURITY'))
    adopt.add_columns(op, "proactive_insights", sa.Column("quarantine_reason", sa.Text(), nullable=True))
    # Rows of an adopted table were written by something else: each is checked. Switchboard's
    # own rows fit; of those only the ones still waiting are looked at, to keep this quick.
    query = sa.select(insights)
    if not adopt.adopted(bind, "proactive_insights"):
        query = query.where(insights.c.cleared_at.is_(None))
    now = dt.datetime.now(dt.UTC)
    for row in bind.execute(query).all():
        reason = unfit(row)
        if reason:
            bind.execute(
                sa.update(insights)
                .where(insights.c.id == row.id)
                .values(quarantine_reason=reason, cleared_at=row.cleared_at or now, cleared_by=QUARANTINE)
            )


def downgrade() -> None:
    adopt.drop_columns(op, "proactive_insights", "quarantine_reason")
