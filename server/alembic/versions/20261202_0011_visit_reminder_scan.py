"""visit reminder scan

Each visit keeps when the reminder scan looks at it next (`reminders_next_at`, 1970 until
computed, behind a partial index of pending visits) and the round of its reminders
(`reminder_round`), part of each reminder notification's dedupe key.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
import app.db.base

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("visits", schema=None) as batch_op:
        # Existing visits get 1970: not computed yet, so the first scan takes them.
        batch_op.add_column(
            sa.Column(
                "reminders_next_at",
                app.db.base.UTCDateTime(timezone=True),
                server_default=sa.text("'1970-01-01 00:00:00'"),
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column("reminder_round", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.create_index(
            "ix_visits_reminders_next_at",
            ["reminders_next_at"],
            unique=False,
            postgresql_where=sa.text("status IN ('scheduled', 'open')"),
            sqlite_where=sa.text("status IN ('scheduled', 'open')"),
        )


def downgrade() -> None:
    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_visits_reminders_next_at",
            postgresql_where=sa.text("status IN ('scheduled', 'open')"),
            sqlite_where=sa.text("status IN ('scheduled', 'open')"),
        )
        batch_op.drop_column("reminder_round")
        batch_op.drop_column("reminders_next_at")
