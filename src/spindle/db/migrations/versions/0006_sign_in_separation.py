"""users: the session epoch (sign-out ends sessions server-side) and the identity provider
that made a user (its users stay apart from local ones)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 14:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_epoch", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("issuer", sa.String(length=1024), nullable=True))
    # Users an identity provider made before issuers were recorded have no password: they
    # are marked "a provider's, issuer not known yet" (''), and the first provider to sign
    # one in is recorded. Users with a password, and ``local``, stay local (NULL).
    op.execute("UPDATE users SET issuer = '' WHERE password_hash IS NULL AND name <> 'local'")


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("issuer")
        batch_op.drop_column("session_epoch")
