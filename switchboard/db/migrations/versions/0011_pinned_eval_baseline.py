"""an eval baseline is pinned by a person (`switchboard eval baseline set`), not moved by every
run that did not regress: who pinned it and when. Earlier automatic baselines are unpinned, so
a run compares against a baseline only once someone has chosen one.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 08:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("eval_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("baseline_pinned_by", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("baseline_pinned_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(sa.text("UPDATE eval_runs SET is_baseline = false"))


def downgrade() -> None:
    with op.batch_alter_table("eval_runs", schema=None) as batch_op:
        batch_op.drop_column("baseline_pinned_at")
        batch_op.drop_column("baseline_pinned_by")
