"""indexes for the web UI's run lists and dashboard

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-30 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_workflow_type_seq", ["workflow_type", "seq"], unique=False)
        batch_op.create_index("ix_runs_submitted_at_state", ["submitted_at", "state"], unique=False)
        batch_op.create_index("ix_runs_state_end_time", ["state", "end_time"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_state_end_time")
        batch_op.drop_index("ix_runs_submitted_at_state")
        batch_op.drop_index("ix_runs_workflow_type_seq")
