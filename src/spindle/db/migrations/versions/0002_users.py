"""users, API tokens and run owners

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:00:00

Creates ``users`` (with the ``local`` user that ``auth = "none"`` acts as) and ``api_tokens``,
and gives every run an owner: runs that existed before are the local user's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

import spindle.db.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
#: tables whose rows point at runs with ON DELETE CASCADE
CHILDREN = ("tasks", "events")


@contextmanager
def sqlite_children_kept() -> Iterator[None]:
    """Batch mode rebuilds ``runs`` on SQLite (copy, DROP, rename). With foreign keys on, that
    DROP deletes every task and event through their ON DELETE CASCADE, and the pragma cannot
    be turned off inside the migration's transaction; so their rows are copied aside first
    and put back once ``runs`` is whole again."""
    if op.get_bind().dialect.name != "sqlite":
        yield
        return
    for name in CHILDREN:
        op.execute(f"CREATE TEMP TABLE keep_{name} AS SELECT * FROM {name}")
    yield
    for name in CHILDREN:
        op.execute(f"DELETE FROM {name}")
        op.execute(f"INSERT INTO {name} SELECT * FROM keep_{name}")
        op.execute(f"DROP TABLE keep_{name}")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("display_name", sa.String(length=255), nullable=True),
        sa.Column("created_at", spindle.db.types.UTCDateTime(), nullable=False),
        sa.Column("last_login_at", spindle.db.types.UTCDateTime(), nullable=True),
        sa.Column("preferences", sa.JSON(), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
        **MYSQL,
    )
    users = sa.table(
        "users",
        sa.column("name", sa.String()),
        sa.column("created_at", spindle.db.types.UTCDateTime()),
        sa.column("preferences", sa.JSON()),
        sa.column("is_admin", sa.Boolean()),
        sa.column("disabled", sa.Boolean()),
    )
    op.bulk_insert(
        users,
        [
            {
                "name": "local",
                "created_at": datetime.now(UTC),
                "preferences": {},
                "is_admin": False,
                "disabled": False,
            }
        ],
    )

    op.create_table(
        "api_tokens",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", spindle.db.types.UTCDateTime(), nullable=False),
        sa.Column("last_used_at", spindle.db.types.UTCDateTime(), nullable=True),
        sa.Column("expires_at", spindle.db.types.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", spindle.db.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
        **MYSQL,
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_api_tokens_user_id", ["user_id"], unique=False)

    # Added as nullable, filled with the local user, then made NOT NULL with its key.
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_id", BigId, nullable=True))
    op.execute("UPDATE runs SET owner_id = (SELECT id FROM users WHERE name = 'local')")
    with sqlite_children_kept(), op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.alter_column("owner_id", existing_type=BigId, nullable=False)
        # the indexes before the key: MariaDB would otherwise add an index of its own for it
        batch_op.create_index("ix_runs_owner_id_seq", ["owner_id", "seq"], unique=False)
        batch_op.create_index("ix_runs_owner_id_state", ["owner_id", "state"], unique=False)
        batch_op.create_foreign_key(op.f("fk_runs_owner_id_users"), "users", ["owner_id"], ["id"])


def downgrade() -> None:
    with sqlite_children_kept(), op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("fk_runs_owner_id_users"), type_="foreignkey")
        batch_op.drop_index("ix_runs_owner_id_state")
        batch_op.drop_index("ix_runs_owner_id_seq")
        batch_op.drop_column("owner_id")
    op.drop_table("api_tokens")
    op.drop_table("users")
