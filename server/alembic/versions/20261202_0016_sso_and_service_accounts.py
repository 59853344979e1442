"""single sign-on accounts and service accounts

Accounts that sign in only through an identity provider, and service accounts for
integrations, have no password: `users.password_hash` becomes nullable. `users.kind` tells a
person from a service account, and `users.owner_id` names the administrator who owns a service
account (docs/accounts.md).

Revision ID: 0016
Revises: 0017
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("password_hash", existing_type=sa.String(length=255), nullable=True)
        batch_op.add_column(
            sa.Column("kind", sa.String(length=20), nullable=False, server_default="person")
        )
        batch_op.add_column(sa.Column("owner_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            "fk_users_owner_id_users", "users", ["owner_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    # Accounts without a password get an unusable one: no password verifies against it.
    op.execute("UPDATE users SET password_hash = '!' WHERE password_hash IS NULL")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint("fk_users_owner_id_users", type_="foreignkey")
        batch_op.drop_column("owner_id")
        batch_op.drop_column("kind")
        batch_op.alter_column("password_hash", existing_type=sa.String(length=255), nullable=False)
