"""schedules and visits

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.db.base

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('schedules',
    sa.Column('study_id', sa.Uuid(), nullable=False),
    sa.Column('current_version', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', app.db.base.UTCDateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.Column('updated_at', app.db.base.UTCDateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_schedules_created_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_schedules_study_id_studies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedules')),
    sa.UniqueConstraint('study_id', name=op.f('uq_schedules_study_id'))
    )
    op.create_table('schedule_versions',
    sa.Column('schedule_id', sa.Uuid(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('reminder_quiet_hours', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('created_at', app.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_schedule_versions_created_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['schedule_id'], ['schedules.id'], name=op.f('fk_schedule_versions_schedule_id_schedules'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedule_versions')),
    sa.UniqueConstraint('schedule_id', 'version', name=op.f('uq_schedule_versions_schedule_id_version'))
    )
    op.create_table('schedule_events',
    sa.Column('schedule_version_id', sa.Uuid(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=255), nullable=False),
    sa.Column('anchor', sa.String(length=20), nullable=False),
    sa.Column('offset_days', sa.Integer(), nullable=False),
    sa.Column('window_before_days', sa.Integer(), nullable=False),
    sa.Column('window_after_days', sa.Integer(), nullable=False),
    sa.Column('battery_id', sa.Uuid(), nullable=False),
    sa.Column('repeat_every_days', sa.Integer(), nullable=True),
    sa.Column('repeat_count', sa.Integer(), nullable=False),
    sa.Column('reminders', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['battery_id'], ['batteries.id'], name=op.f('fk_schedule_events_battery_id_batteries'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['schedule_version_id'], ['schedule_versions.id'], name=op.f('fk_schedule_events_schedule_version_id_schedule_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedule_events')),
    sa.UniqueConstraint('schedule_version_id', 'key', name=op.f('uq_schedule_events_schedule_version_id_key'))
    )
    op.create_table('visits',
    sa.Column('study_id', sa.Uuid(), nullable=False),
    sa.Column('participant_id', sa.Uuid(), nullable=False),
    sa.Column('schedule_id', sa.Uuid(), nullable=False),
    sa.Column('schedule_version', sa.Integer(), nullable=False),
    sa.Column('schedule_event_id', sa.Uuid(), nullable=False),
    sa.Column('event_key', sa.String(length=64), nullable=False),
    sa.Column('occurrence', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=255), nullable=False),
    sa.Column('battery_id', sa.Uuid(), nullable=False),
    sa.Column('anchor', sa.String(length=20), nullable=False),
    sa.Column('anchor_date', sa.Date(), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('window_start_date', sa.Date(), nullable=False),
    sa.Column('window_end_date', sa.Date(), nullable=False),
    sa.Column('due_at', app.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('window_opens_at', app.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('window_closes_at', app.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('completed_session_id', sa.Uuid(), nullable=True),
    sa.Column('completed_at', app.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', app.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancellation_reason', sa.String(length=32), nullable=True),
    sa.Column('rescheduled_at', app.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reschedule_reason', sa.Text(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', app.db.base.UTCDateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.Column('updated_at', app.db.base.UTCDateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
    sa.ForeignKeyConstraint(['battery_id'], ['batteries.id'], name=op.f('fk_visits_battery_id_batteries'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['completed_session_id'], ['assessment_sessions.id'], name=op.f('fk_visits_completed_session_id_assessment_sessions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_visits_participant_id_participants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['schedule_event_id'], ['schedule_events.id'], name=op.f('fk_visits_schedule_event_id_schedule_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['schedule_id'], ['schedules.id'], name=op.f('fk_visits_schedule_id_schedules'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_visits_study_id_studies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_visits')),
    sa.UniqueConstraint('participant_id', 'event_key', 'occurrence', name=op.f('uq_visits_participant_id_event_key_occurrence'))
    )
    op.create_index(op.f('ix_visits_schedule_event_id'), 'visits', ['schedule_event_id'], unique=False)
    op.create_index('ix_visits_status_window_closes_at', 'visits', ['status', 'window_closes_at'], unique=False)
    op.create_index('ix_visits_status_window_opens_at', 'visits', ['status', 'window_opens_at'], unique=False)
    op.create_index('ix_visits_study_id_window_closes_at', 'visits', ['study_id', 'window_closes_at'], unique=False)
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('anchor_date', sa.Date(), nullable=True))
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), server_default='UTC', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.drop_column('timezone')
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.drop_column('anchor_date')
    op.drop_index('ix_visits_study_id_window_closes_at', table_name='visits')
    op.drop_index('ix_visits_status_window_opens_at', table_name='visits')
    op.drop_index('ix_visits_status_window_closes_at', table_name='visits')
    op.drop_index(op.f('ix_visits_schedule_event_id'), table_name='visits')
    op.drop_table('visits')
    op.drop_table('schedule_events')
    op.drop_table('schedule_versions')
    op.drop_table('schedules')
