"""REDCap repeating instruments and events

A project's repeating instruments (and repeating events) as its last check found them, the
instrument of each mapped field, and the instance each pushed session was given in a repeating
instrument (docs/redcap.md, repeating instruments).

Revision ID: 0020
Revises: 0014
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0020"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("redcap_projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("field_forms", JSON, nullable=False, server_default="{}"))
        batch_op.add_column(
            sa.Column("repeating_forms", JSON, nullable=False, server_default="[]")
        )
    op.create_table(
        "redcap_repeat_instances",
        sa.Column("redcap_project_id", sa.Uuid(), nullable=False),
        sa.Column("record_id", sa.String(length=100), nullable=False),
        sa.Column("event_name", sa.String(length=100), nullable=False),
        sa.Column("instrument", sa.String(length=100), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("instance", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["redcap_project_id"],
            ["redcap_projects.id"],
            name=op.f("fk_redcap_repeat_instances_redcap_project_id_redcap_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redcap_repeat_instances")),
        sa.UniqueConstraint(
            "redcap_project_id",
            "record_id",
            "event_name",
            "instrument",
            "session_id",
            name="uq_redcap_repeat_instances_session",
        ),
        sa.UniqueConstraint(
            "redcap_project_id",
            "record_id",
            "event_name",
            "instrument",
            "instance",
            name="uq_redcap_repeat_instances_instance",
        ),
    )


def downgrade() -> None:
    op.drop_table("redcap_repeat_instances")
    with op.batch_alter_table("redcap_projects", schema=None) as batch_op:
        batch_op.drop_column("repeating_forms")
        batch_op.drop_column("field_forms")
