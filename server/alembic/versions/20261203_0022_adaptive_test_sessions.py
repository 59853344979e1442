"""Adaptive test sessions and their steps

Revision ID: 0022
Revises: 0016
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.base

revision: str = "0022"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cat_sessions",
        sa.Column("study_id", sa.Uuid(), nullable=False),
        sa.Column("participant_id", sa.Uuid(), nullable=False),
        sa.Column("assessment_session_id", sa.Uuid(), nullable=False),
        sa.Column("bank_id", sa.Uuid(), nullable=False),
        sa.Column("bank_version_id", sa.Uuid(), nullable=False),
        sa.Column("bank_version", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("theta", sa.Float(), nullable=False),
        sa.Column("se", sa.Float(), nullable=False),
        sa.Column("n_items", sa.Integer(), nullable=False),
        sa.Column("stop_reason", sa.String(length=32), nullable=True),
        sa.Column("device_theta", sa.Float(), nullable=True),
        sa.Column("device_se", sa.Float(), nullable=True),
        sa.Column("started_at", app.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", app.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("task_result_id", sa.Uuid(), nullable=True),
        sa.Column("started_by_user_id", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            app.db.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            app.db.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["assessment_session_id"],
            ["assessment_sessions.id"],
            name=op.f("fk_cat_sessions_assessment_session_id_assessment_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["bank_id"],
            ["item_banks.id"],
            name=op.f("fk_cat_sessions_bank_id_item_banks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["bank_version_id"],
            ["item_bank_versions.id"],
            name=op.f("fk_cat_sessions_bank_version_id_item_bank_versions"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participants.id"],
            name=op.f("fk_cat_sessions_participant_id_participants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["started_by_user_id"],
            ["users.id"],
            name=op.f("fk_cat_sessions_started_by_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["studies.id"],
            name=op.f("fk_cat_sessions_study_id_studies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_result_id"],
            ["task_results.id"],
            name=op.f("fk_cat_sessions_task_result_id_task_results"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cat_sessions")),
        sa.UniqueConstraint(
            "assessment_session_id",
            "bank_id",
            name=op.f("uq_cat_sessions_assessment_session_id_bank_id"),
        ),
    )
    with op.batch_alter_table("cat_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_cat_sessions_participant_id", ["participant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_cat_sessions_study_id"), ["study_id"], unique=False)

    op.create_table(
        "cat_session_steps",
        sa.Column("cat_session_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("response", sa.Integer(), nullable=True),
        sa.Column("theta", sa.Float(), nullable=True),
        sa.Column("se", sa.Float(), nullable=True),
        sa.Column("given_at", app.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("answered_at", app.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cat_session_id"],
            ["cat_sessions.id"],
            name=op.f("fk_cat_session_steps_cat_session_id_cat_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cat_session_steps")),
        sa.UniqueConstraint(
            "cat_session_id", "position", name=op.f("uq_cat_session_steps_cat_session_id_position")
        ),
    )


def downgrade() -> None:
    op.drop_table("cat_session_steps")
    with op.batch_alter_table("cat_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cat_sessions_study_id"))
        batch_op.drop_index("ix_cat_sessions_participant_id")

    op.drop_table("cat_sessions")
