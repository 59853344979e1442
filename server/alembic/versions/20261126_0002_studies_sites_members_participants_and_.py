"""studies, sites, members, participants and consent

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
import app.db.base

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('studies',
    sa.Column('code', sa.String(length=50), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('pi_name', sa.String(length=255), nullable=True),
    sa.Column('pi_email', sa.String(length=320), nullable=True),
    sa.Column('start_date', sa.Date(), nullable=True),
    sa.Column('end_date', sa.Date(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('config', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('supported_languages', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('consent_mode', sa.String(length=20), nullable=False),
    sa.Column('redcap_enabled', sa.Boolean(), server_default='0', nullable=False),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', app.db.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('updated_at', app.db.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_studies_created_by_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_studies'))
    )
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.create_index('uq_studies_code', ['code'], unique=True)

    op.create_table('consent_forms',
    sa.Column('study_id', sa.Uuid(), nullable=False),
    sa.Column('language', sa.String(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=255), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('questions', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('requires_signature', sa.Boolean(), nullable=False),
    sa.Column('reconsent_required', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=True),
    sa.Column('published_at', app.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', app.db.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('updated_at', app.db.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_consent_forms_created_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_consent_forms_study_id_studies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consent_forms')),
    sa.UniqueConstraint('study_id', 'language', 'version', name=op.f('uq_consent_forms_study_id_language_version'))
    )
    with op.batch_alter_table('consent_forms', schema=None) as batch_op:
        batch_op.create_index('ix_consent_forms_study_id_language_status', ['study_id', 'language', 'status'], unique=False)

    op.create_table('study_sites',
    sa.Column('study_id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.String(length=50), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', app.db.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('updated_at', app.db.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_study_sites_study_id_studies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_study_sites')),
    sa.UniqueConstraint('study_id', 'code', name=op.f('uq_study_sites_study_id_code'))
    )
    with op.batch_alter_table('study_sites', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_study_sites_study_id'), ['study_id'], unique=False)

    op.create_table('participants',
    sa.Column('study_id', sa.Uuid(), nullable=False),
    sa.Column('participant_code', sa.String(length=64), nullable=False),
    sa.Column('site_id', sa.Uuid(), nullable=True),
    sa.Column('email_encrypted', sa.Text(), nullable=True),
    sa.Column('email_index', sa.String(length=64), nullable=True),
    sa.Column('phone_encrypted', sa.Text(), nullable=True),
    sa.Column('enrollment_date', sa.Date(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('actor', sa.String(length=20), nullable=False),
    sa.Column('language', sa.String(length=16), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('withdrawn_at', app.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('withdrawal_scope', sa.String(length=20), nullable=True),
    sa.Column('withdrawal_reason', sa.Text(), nullable=True),
    sa.Column('access_code_hash', sa.String(length=64), nullable=True),
    sa.Column('access_code_created_at', app.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', app.db.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('updated_at', app.db.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['study_sites.id'], name=op.f('fk_participants_site_id_study_sites'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_participants_study_id_studies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_participants')),
    sa.UniqueConstraint('study_id', 'participant_code', name=op.f('uq_participants_study_id_participant_code'))
    )
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.create_index('ix_participants_email_index', ['email_index'], unique=False)
        batch_op.create_index(batch_op.f('ix_participants_site_id'), ['site_id'], unique=False)
        batch_op.create_index('ix_participants_study_id_status', ['study_id', 'status'], unique=False)

    op.create_table('study_members',
    sa.Column('study_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('site_id', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', app.db.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('updated_at', app.db.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['study_sites.id'], name=op.f('fk_study_members_site_id_study_sites'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_study_members_study_id_studies'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_study_members_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_study_members')),
    sa.UniqueConstraint('study_id', 'user_id', name=op.f('uq_study_members_study_id_user_id'))
    )
    with op.batch_alter_table('study_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_study_members_study_id'), ['study_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_study_members_user_id'), ['user_id'], unique=False)

    op.create_table('consent_records',
    sa.Column('participant_id', sa.Uuid(), nullable=False),
    sa.Column('study_id', sa.Uuid(), nullable=False),
    sa.Column('form_id', sa.Uuid(), nullable=False),
    sa.Column('form_version', sa.Integer(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('signer_name', sa.String(length=255), nullable=False),
    sa.Column('signer_role', sa.String(length=20), nullable=False),
    sa.Column('witness_name', sa.String(length=255), nullable=True),
    sa.Column('answers', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('signature_image', sa.Text(), nullable=True),
    sa.Column('signed_at', app.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('device', sa.String(length=255), nullable=True),
    sa.Column('recorded_by', sa.Uuid(), nullable=True),
    sa.Column('withdrawn_at', app.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('withdrawal_reason', sa.Text(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['form_id'], ['consent_forms.id'], name=op.f('fk_consent_records_form_id_consent_forms'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_consent_records_participant_id_participants'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['recorded_by'], ['users.id'], name=op.f('fk_consent_records_recorded_by_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_consent_records_study_id_studies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consent_records'))
    )
    with op.batch_alter_table('consent_records', schema=None) as batch_op:
        batch_op.create_index('ix_consent_records_participant_id_signed_at', ['participant_id', 'signed_at'], unique=False)

    op.create_table('participant_logins',
    sa.Column('participant_id', sa.Uuid(), nullable=False),
    sa.Column('method', sa.String(length=20), nullable=False),
    sa.Column('device', sa.String(length=255), nullable=True),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('created_at', app.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', app.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', app.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_participant_logins_participant_id_participants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_participant_logins'))
    )
    with op.batch_alter_table('participant_logins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_participant_logins_participant_id'), ['participant_id'], unique=False)

    op.create_table('participant_magic_links',
    sa.Column('participant_id', sa.Uuid(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', app.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', app.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', app.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_participant_magic_links_participant_id_participants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_participant_magic_links')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_participant_magic_links_token_hash'))
    )
    with op.batch_alter_table('participant_magic_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_participant_magic_links_participant_id'), ['participant_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('participant_magic_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_participant_magic_links_participant_id'))

    op.drop_table('participant_magic_links')
    with op.batch_alter_table('participant_logins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_participant_logins_participant_id'))

    op.drop_table('participant_logins')
    with op.batch_alter_table('consent_records', schema=None) as batch_op:
        batch_op.drop_index('ix_consent_records_participant_id_signed_at')

    op.drop_table('consent_records')
    with op.batch_alter_table('study_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_study_members_user_id'))
        batch_op.drop_index(batch_op.f('ix_study_members_study_id'))

    op.drop_table('study_members')
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.drop_index('ix_participants_study_id_status')
        batch_op.drop_index(batch_op.f('ix_participants_site_id'))
        batch_op.drop_index('ix_participants_email_index')

    op.drop_table('participants')
    with op.batch_alter_table('study_sites', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_study_sites_study_id'))

    op.drop_table('study_sites')
    with op.batch_alter_table('consent_forms', schema=None) as batch_op:
        batch_op.drop_index('ix_consent_forms_study_id_language_status')

    op.drop_table('consent_forms')
    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.drop_index('uq_studies_code')

    op.drop_table('studies')
