"""runs: lineage (recover and resubmit), tombstones (DELETE /runs/{id}) and what retention
removed

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import spindle.db.types

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at", spindle.db.types.UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("work_removed_at", spindle.db.types.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("files_removed_at", spindle.db.types.UTCDateTime(), nullable=True)
        )
    op.create_table(
        "run_lineage",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("parent_run_id", sa.String(length=36), nullable=False),
        sa.Column("recovery", sa.Boolean(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("work_from", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["parent_run_id"], ["runs.id"], name=op.f("fk_run_lineage_parent_run_id_runs")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_lineage_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_lineage")),
        sa.UniqueConstraint("work_from", name=op.f("uq_run_lineage_work_from")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_index("ix_run_lineage_parent_run_id", "run_lineage", ["parent_run_id"], unique=False)


def downgrade() -> None:
    # (the table's index goes with it: MariaDB refuses to drop it alone, a foreign key uses it)
    op.drop_table("run_lineage")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("files_removed_at")
        batch_op.drop_column("work_removed_at")
        batch_op.drop_column("deleted_at")
