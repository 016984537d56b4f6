"""web UI: indexes for run lists and the dashboard, and the run_texts search table

Each index comes twice: as is, for an admin (who sees every run), and led by ``owner_id``,
for everyone else (whose every query is limited to their own runs).

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-30 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: as ``spindle.runs.store.MAX_SEARCH_TEXT`` when this revision was written
MAX_SEARCH_TEXT = 16_000
BATCH = 2000


def _text(run_id: str, workflow_url: str, tags: dict[str, Any]) -> str:
    """As ``spindle.runs.store.search_text`` when this revision was written."""
    lines = [run_id, workflow_url, *(f"{k}={v}" for k, v in tags.items())]
    return "\n".join(lines).lower()[:MAX_SEARCH_TEXT]


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_workflow_type_seq", ["workflow_type", "seq"], unique=False)
        batch_op.create_index("ix_runs_state_submitted_at", ["state", "submitted_at"], unique=False)
        batch_op.create_index("ix_runs_state_end_time", ["state", "end_time"], unique=False)
        batch_op.create_index(
            "ix_runs_owner_id_workflow_type_seq", ["owner_id", "workflow_type", "seq"], unique=False
        )
        batch_op.create_index(
            "ix_runs_owner_id_state_submitted_at",
            ["owner_id", "state", "submitted_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_runs_owner_id_state_end_time", ["owner_id", "state", "end_time"], unique=False
        )

    run_texts = op.create_table(
        "run_texts",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["seq"], ["runs.seq"], name=op.f("fk_run_texts_seq_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_run_texts")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )

    # the runs that exist already, in batches by key
    runs = sa.table(
        "runs",
        sa.column("seq", sa.BigInteger()),
        sa.column("id", sa.String()),
        sa.column("workflow_url", sa.Text()),
        sa.column("tags", sa.JSON()),
    )
    conn = op.get_bind()
    after = -1
    while True:
        rows = conn.execute(
            sa.select(runs.c.seq, runs.c.id, runs.c.workflow_url, runs.c.tags)
            .where(runs.c.seq > after)
            .order_by(runs.c.seq)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        conn.execute(
            sa.insert(run_texts),
            [{"seq": r.seq, "text": _text(r.id, r.workflow_url, r.tags or {})} for r in rows],
        )
        after = rows[-1].seq


def downgrade() -> None:
    op.drop_table("run_texts")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_owner_id_state_end_time")
        batch_op.drop_index("ix_runs_owner_id_state_submitted_at")
        batch_op.drop_index("ix_runs_owner_id_workflow_type_seq")
        batch_op.drop_index("ix_runs_state_end_time")
        batch_op.drop_index("ix_runs_state_submitted_at")
        batch_op.drop_index("ix_runs_workflow_type_seq")
