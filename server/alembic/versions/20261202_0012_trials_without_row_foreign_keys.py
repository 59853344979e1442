"""trials without per-row foreign keys

Each trial row named its study, participant and session through a foreign key, which PostgreSQL
checked for every row of every COPY (500 rows per task: most of the database's work for a
submission). A trial is only ever written in the transaction that inserts its task result, for
the session whose row that transaction holds locked, and with that session's study and
participant: integrity comes from the task result's key to its session. Trials are deleted
explicitly with their sessions (participant erasure); nothing else deletes sessions, studies or
participants.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FOREIGN_KEYS = (
    ("fk_trials_study_id_studies", "study_id", "studies"),
    ("fk_trials_participant_id_participants", "participant_id", "participants"),
    ("fk_trials_session_id_assessment_sessions", "session_id", "assessment_sessions"),
)


def upgrade() -> None:
    with op.batch_alter_table("trials", schema=None) as batch_op:
        for name, _column, _table in _FOREIGN_KEYS:
            batch_op.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    # Rows the keys would refuse (a session deleted without its trials) cannot stay.
    op.execute("DELETE FROM trials WHERE session_id NOT IN (SELECT id FROM assessment_sessions)")
    with op.batch_alter_table("trials", schema=None) as batch_op:
        for name, column, table in _FOREIGN_KEYS:
            batch_op.create_foreign_key(name, table, [column], ["id"], ondelete="CASCADE")
