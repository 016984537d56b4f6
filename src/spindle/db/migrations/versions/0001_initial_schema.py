"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 01:59:50.755857
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import spindle.db.types

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("workflow_type", sa.String(length=32), nullable=False),
        sa.Column("workflow_type_version", sa.String(length=64), nullable=False),
        sa.Column("workflow_url", sa.Text(), nullable=False),
        sa.Column("workflow_engine", sa.String(length=64), nullable=True),
        sa.Column("workflow_engine_version", sa.String(length=64), nullable=True),
        sa.Column("workflow_params", sa.JSON(), nullable=False),
        sa.Column("workflow_engine_parameters", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("engine", sa.String(length=64), nullable=False),
        sa.Column("compute_env", sa.String(length=64), nullable=False),
        sa.Column("submitted_at", spindle.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", spindle.db.types.UTCDateTime(), nullable=False),
        sa.Column("start_time", spindle.db.types.UTCDateTime(), nullable=True),
        sa.Column("end_time", spindle.db.types.UTCDateTime(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("cmd", sa.JSON(), nullable=False),
        sa.Column("system_logs", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=True),
        sa.Column("handle", sa.JSON(), nullable=True),
        sa.Column("worker_id", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", spindle.db.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_runs")),
        sa.UniqueConstraint("id", name=op.f("uq_runs_id")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_state_lease", ["state", "lease_expires_at"], unique=False)
        batch_op.create_index("ix_runs_state_seq", ["state", "seq"], unique=False)
        batch_op.create_index("ix_runs_worker_id", ["worker_id"], unique=False)

    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("at", spindle.db.types.UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_events_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_run_id_id", ["run_id", "id"], unique=False)

    op.create_table(
        "tasks",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("cmd", sa.JSON(), nullable=False),
        sa.Column("start_time", spindle.db.types.UTCDateTime(), nullable=True),
        sa.Column("end_time", spindle.db.types.UTCDateTime(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("stdout", sa.JSON(), nullable=True),
        sa.Column("stderr", sa.JSON(), nullable=True),
        sa.Column("system_logs", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_tasks_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "id", name=op.f("pk_tasks")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index("ix_tasks_run_id_ordinal", ["run_id", "ordinal"], unique=True)


def downgrade() -> None:
    # Indexes go with their tables; dropping one first fails on MariaDB when a foreign key
    # needs it (error 1553).
    op.drop_table("tasks")
    op.drop_table("events")
    op.drop_table("runs")
