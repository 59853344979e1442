"""notifications and channel opt-outs

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.base

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('notification_opt_outs',
    sa.Column('participant_id', sa.Uuid(), nullable=False),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('created_at', app.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_notification_opt_outs_participant_id_participants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_opt_outs')),
    sa.UniqueConstraint('participant_id', 'channel', name=op.f('uq_notification_opt_outs_participant_id_channel'))
    )
    op.create_table('notifications',
    sa.Column('study_id', sa.Uuid(), nullable=False),
    sa.Column('participant_id', sa.Uuid(), nullable=False),
    sa.Column('visit_id', sa.Uuid(), nullable=True),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('send_at', app.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('due_at', app.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('language', sa.String(length=16), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=200), nullable=False),
    sa.Column('destination_hint', sa.String(length=100), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('provider_message_id', sa.String(length=255), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('claimed_at', app.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('sent_at', app.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', app.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancel_reason', sa.String(length=64), nullable=True),
    sa.Column('resend_of', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', app.db.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('updated_at', app.db.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_notifications_participant_id_participants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['resend_of'], ['notifications.id'], name=op.f('fk_notifications_resend_of_notifications'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_notifications_study_id_studies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_notifications_dedupe_key'))
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index('ix_notifications_participant_id_send_at', ['participant_id', 'send_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_notifications_resend_of'), ['resend_of'], unique=False)
        batch_op.create_index('ix_notifications_status_due_at', ['status', 'due_at'], unique=False)
        batch_op.create_index('ix_notifications_study_id_send_at', ['study_id', 'send_at'], unique=False)
        batch_op.create_index('ix_notifications_visit_id', ['visit_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_visit_id')
        batch_op.drop_index('ix_notifications_study_id_send_at')
        batch_op.drop_index('ix_notifications_status_due_at')
        batch_op.drop_index(batch_op.f('ix_notifications_resend_of'))
        batch_op.drop_index('ix_notifications_participant_id_send_at')

    op.drop_table('notifications')
    op.drop_table('notification_opt_outs')
