"""redcap projects

The REDCap projects a study (or one of its sites) feeds, and the REDCap project of an outbox
delivery.

Revision ID: 0013
Revises: 0015
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
import app.db.base

revision: str = '0013'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('redcap_projects',
    sa.Column('study_id', sa.Uuid(), nullable=False),
    sa.Column('site_id', sa.Uuid(), nullable=True),
    sa.Column('api_url', sa.String(length=2000), nullable=False),
    sa.Column('token_encrypted', sa.Text(), nullable=False),
    sa.Column('record_id_field', sa.String(length=100), nullable=False),
    sa.Column('field_mapping', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('event_mapping', sa.JSON().with_variant(postgresql.JSONB(), 'postgresql'), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('longitudinal', sa.Boolean(), nullable=False),
    sa.Column('project_title', sa.String(length=500), nullable=True),
    sa.Column('redcap_version', sa.String(length=50), nullable=True),
    sa.Column('checked_at', app.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('redcap_project_ref', sa.String(length=50), nullable=True),
    sa.Column('trigger_token_hash', sa.String(length=64), nullable=False),
    sa.Column('trigger_token_encrypted', sa.Text(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', app.db.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('updated_at', app.db.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['study_sites.id'], name=op.f('fk_redcap_projects_site_id_study_sites'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_redcap_projects_study_id_studies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_redcap_projects'))
    )
    with op.batch_alter_table('redcap_projects', schema=None) as batch_op:
        batch_op.create_index('ix_redcap_projects_study_id_site_id', ['study_id', 'site_id'], unique=False)
        batch_op.create_index('ix_redcap_projects_trigger_token_hash', ['trigger_token_hash'], unique=True)

    with op.batch_alter_table('outbox_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('redcap_project_id', sa.Uuid(), nullable=True))
        batch_op.create_index('ix_outbox_deliveries_redcap_project_id_created_at', ['redcap_project_id', 'created_at'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_outbox_deliveries_event_id_redcap_project_id'), ['event_id', 'redcap_project_id'])
        batch_op.create_foreign_key(batch_op.f('fk_outbox_deliveries_redcap_project_id_redcap_projects'), 'redcap_projects', ['redcap_project_id'], ['id'], ondelete='CASCADE')



def downgrade() -> None:
    # REDCap deliveries have no destination without their project.
    op.execute("DELETE FROM outbox_deliveries WHERE destination = 'redcap'")
    with op.batch_alter_table('outbox_deliveries', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_outbox_deliveries_redcap_project_id_redcap_projects'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_outbox_deliveries_event_id_redcap_project_id'), type_='unique')
        batch_op.drop_index('ix_outbox_deliveries_redcap_project_id_created_at')
        batch_op.drop_column('redcap_project_id')

    with op.batch_alter_table('redcap_projects', schema=None) as batch_op:
        batch_op.drop_index('ix_redcap_projects_trigger_token_hash')
        batch_op.drop_index('ix_redcap_projects_study_id_site_id')

    op.drop_table('redcap_projects')
