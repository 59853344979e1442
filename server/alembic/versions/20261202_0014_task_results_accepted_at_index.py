"""task results by time of receipt

The dashboard's data quality covers the tasks received in the last 30 days; this index finds
them without reading a study's whole history (docs/dashboard.md).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("task_results", schema=None) as batch_op:
        batch_op.create_index("ix_task_results_accepted_at", ["accepted_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("task_results", schema=None) as batch_op:
        batch_op.drop_index("ix_task_results_accepted_at")
