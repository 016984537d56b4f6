"""run groups: the run_groups table, and each run's group, priority and CPUs

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import spindle.db.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "run_groups",
        sa.Column("seq", BigId, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("owner_id", BigId, nullable=False),
        sa.Column("created_at", spindle.db.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", spindle.db.types.UTCDateTime(), nullable=False),
        sa.Column("max_runs", sa.Integer(), nullable=True),
        sa.Column("max_cpus", sa.Integer(), nullable=True),
        sa.Column("max_duration_seconds", sa.Integer(), nullable=True),
        sa.Column("compute_env", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_run_groups_owner_id_users")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_run_groups")),
        sa.UniqueConstraint("id", name=op.f("uq_run_groups_id")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("run_groups", schema=None) as batch_op:
        batch_op.create_index("ix_run_groups_owner_id_seq", ["owner_id", "seq"], unique=False)
        batch_op.create_index("ix_run_groups_name_seq", ["name", "seq"], unique=False)
        batch_op.create_index(
            "ix_run_groups_owner_id_name_seq", ["owner_id", "name", "seq"], unique=False
        )

    # SQLite adds a column that references another table in place (ALTER TABLE ADD COLUMN
    # ... REFERENCES) rather than rebuilding the whole runs table in batch mode.
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE runs ADD COLUMN group_id VARCHAR(36) "
            "CONSTRAINT fk_runs_group_id_run_groups REFERENCES run_groups (id)"
        )
    else:
        op.add_column("runs", sa.Column("group_id", sa.String(length=36), nullable=True))
        op.create_foreign_key(
            op.f("fk_runs_group_id_run_groups"), "runs", "run_groups", ["group_id"], ["id"]
        )
    op.add_column("runs", sa.Column("priority", sa.Integer(), server_default="0", nullable=False))
    op.add_column("runs", sa.Column("cpus", sa.Integer(), server_default="1", nullable=False))
    op.create_index(
        "ix_runs_group_id_state_priority_seq",
        "runs",
        ["group_id", "state", "priority", "seq"],
        unique=False,
    )
    op.create_index("ix_runs_group_id_seq", "runs", ["group_id", "seq"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        # the foreign key first: MariaDB keeps the index it uses until it is gone
        if op.get_bind().dialect.name != "sqlite":  # there, the rebuilt table has none
            batch_op.drop_constraint(batch_op.f("fk_runs_group_id_run_groups"), type_="foreignkey")
        batch_op.drop_index("ix_runs_group_id_seq")
        batch_op.drop_index("ix_runs_group_id_state_priority_seq")
        batch_op.drop_column("cpus")
        batch_op.drop_column("priority")
        batch_op.drop_column("group_id")
    op.drop_table("run_groups")  # with its indexes
