"""keyed audit chain: links, state, database-numbered events

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Events no longer carry their own hashes: a chainer links them afterwards into
audit_chain_links with HMAC-SHA256 (docs/adr/0004-audit-chain.md). Upgrading first checks the
existing unkeyed chain exactly as the previous release verified it, and refuses to go on when
it does not hold: keying a tampered trail would vouch for it. The state starts at the genesis,
so the chainer's first run links every existing event, in sequence order, with the current key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

import app.db.base

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("alembic.runtime.migration")

GENESIS = "0" * 64
BATCH = 1000

POSTGRES_UPGRADE = [
    # Numbers come from the database, whatever the INSERT says, so no caller can pick one.
    "CREATE SEQUENCE audit_events_sequence_seq AS bigint OWNED BY audit_events.sequence",
    "SELECT setval('audit_events_sequence_seq', COALESCE(MAX(sequence), 0) + 1, false) "
    "FROM audit_events",
    """
    CREATE FUNCTION audit_events_assign_sequence() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.sequence := nextval('audit_events_sequence_seq');
        RETURN NEW;
    END;
    $$
    """,
    """
    CREATE TRIGGER audit_events_assign_sequence BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_assign_sequence()
    """,
    """
    CREATE FUNCTION audit_chain_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END;
    $$
    """,
    """
    CREATE TRIGGER audit_chain_links_no_update_delete BEFORE UPDATE OR DELETE
    ON audit_chain_links FOR EACH ROW EXECUTE FUNCTION audit_chain_append_only()
    """,
    """
    CREATE TRIGGER audit_chain_links_no_truncate BEFORE TRUNCATE ON audit_chain_links
    FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_append_only()
    """,
]
SQLITE_UPGRADE = [
    """
    CREATE TRIGGER audit_chain_links_no_update BEFORE UPDATE ON audit_chain_links
    BEGIN SELECT RAISE(ABORT, 'audit_chain_links is append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER audit_chain_links_no_delete BEFORE DELETE ON audit_chain_links
    BEGIN SELECT RAISE(ABORT, 'audit_chain_links is append-only: DELETE refused'); END
    """,
]
POSTGRES_DOWNGRADE = [
    "DROP TRIGGER audit_chain_links_no_truncate ON audit_chain_links",
    "DROP TRIGGER audit_chain_links_no_update_delete ON audit_chain_links",
    "DROP FUNCTION audit_chain_append_only()",
    "DROP TRIGGER audit_events_assign_sequence ON audit_events",
    "DROP FUNCTION audit_events_assign_sequence()",
    "DROP SEQUENCE audit_events_sequence_seq",
]
SQLITE_DOWNGRADE = [
    "DROP TRIGGER audit_chain_links_no_update",
    "DROP TRIGGER audit_chain_links_no_delete",
]
SQLITE_EVENTS_NO_UPDATE = """
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused'); END
"""

_position = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
_EVENT_COLUMNS: list[tuple[str, Any]] = [
    ('id', sa.Uuid()),
    ('sequence', _position),
    ('occurred_at', app.db.base.UTCDateTime(timezone=True)),
    ('actor_type', sa.String()),
    ('actor_id', sa.String()),
    ('action', sa.String()),
    ('category', sa.String()),
    ('entity_type', sa.String()),
    ('entity_id', sa.String()),
    ('study_id', sa.Uuid()),
    ('participant_id', sa.Uuid()),
    ('before', app.db.base.JSONType),
    ('after', app.db.base.JSONType),
    ('ip', sa.String()),
    ('user_agent', sa.String()),
    ('request_id', sa.String()),
    ('reason', sa.Text()),
]
_events = sa.table('audit_events', *(sa.column(name, type_) for name, type_ in _EVENT_COLUMNS))
# The same table as revisions 0001 to 0005 left it, with the unkeyed hashes.
_legacy_events = sa.table(
    'audit_events',
    *(sa.column(name, type_) for name, type_ in _EVENT_COLUMNS),
    sa.column('prev_hash', sa.String()),
    sa.column('hash', sa.String()),
)
_head = sa.table(
    'audit_chain_head',
    sa.column('id', sa.Integer()),
    sa.column('last_sequence', _position),
    sa.column('last_hash', sa.String()),
)


# The unkeyed construction of revisions 0001 to 0005, frozen here: this revision verifies it on
# the way up and rebuilds it on the way down.
def _normalize(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {str(key): _normalize(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [_normalize(item) for item in value]
    return value


def _legacy_hash(prev_hash: str, event: Any, sequence: int) -> str:
    payload = {
        "id": str(event.id),
        "sequence": sequence,
        "occurred_at": event.occurred_at.isoformat(timespec="microseconds"),
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "action": event.action,
        "category": event.category,
        "entity_type": event.entity_type,
        "entity_id": event.entity_id,
        "study_id": str(event.study_id) if event.study_id else None,
        "participant_id": str(event.participant_id) if event.participant_id else None,
        "before": _normalize(event.before),
        "after": _normalize(event.after),
        "ip": event.ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "reason": event.reason,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical.encode()).hexdigest()


def _events_in_order(connection: sa.Connection, table: sa.TableClause) -> Iterator[Any]:
    last = None
    while True:
        statement = sa.select(*table.c).order_by(table.c.sequence).limit(BATCH)
        if last is not None:
            statement = statement.where(table.c.sequence > last)
        rows = connection.execute(statement).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].sequence


def _verify_legacy_chain(connection: sa.Connection) -> None:
    head = connection.execute(sa.select(_head.c.last_sequence, _head.c.last_hash)).first()
    expected_prev, expected_sequence = GENESIS, 1
    problem = None
    for event in _events_in_order(connection, _legacy_events):
        if event.sequence != expected_sequence:
            problem = f"sequence {event.sequence} found where {expected_sequence} was expected"
        elif event.prev_hash != expected_prev:
            problem = "prev_hash does not match the previous event's hash"
        elif _legacy_hash(event.prev_hash, event, event.sequence) != event.hash:
            problem = "hash does not match the event's content"
        if problem:
            break
        expected_prev = event.hash
        expected_sequence += 1
    checked = expected_sequence - 1
    if problem is None and (head is None or (head[0], head[1]) != (checked, expected_prev)):
        problem = "the chain head disagrees with the events (events missing at the end?)"
        expected_sequence = min(checked, head[0] if head else 0) + 1
    if problem:
        raise RuntimeError(
            f"The audit trail does not verify at sequence {expected_sequence}: {problem}. "
            "Revision 0006 keys the chain and refuses to vouch for a trail that was altered; "
            "investigate (GET /api/audit/verify on the previous release reports the same) "
            "before upgrading."
        )
    logger.info("unkeyed audit chain verified: %s events, last hash %s", checked, expected_prev)


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == 'postgresql'
    _verify_legacy_chain(bind)

    op.create_table('audit_chain_links',
    sa.Column('sequence', _position, autoincrement=False, nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=True),
    sa.Column('prev_mac', sa.String(length=64), nullable=False),
    sa.Column('mac', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('chained_at', app.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sequence', name=op.f('pk_audit_chain_links'))
    )
    with op.batch_alter_table('audit_chain_links', schema=None) as batch_op:
        batch_op.create_index('uq_audit_chain_links_event_id', ['event_id'], unique=True)

    op.create_table('audit_chain_state',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('chain_id', sa.Uuid(), nullable=False),
    sa.Column('last_sequence', _position, nullable=False),
    sa.Column('last_mac', sa.String(length=64), nullable=False),
    sa.Column('updated_at', app.db.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_checkpoint_sequence', _position, nullable=False),
    sa.Column('last_checkpoint_at', app.db.base.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_chain_state'))
    )
    op.bulk_insert(
        sa.table(
            'audit_chain_state',
            sa.column('id', sa.Integer()),
            sa.column('chain_id', sa.Uuid()),
            sa.column('last_sequence', _position),
            sa.column('last_mac', sa.String()),
            sa.column('updated_at', app.db.base.UTCDateTime(timezone=True)),
            sa.column('last_checkpoint_sequence', _position),
        ),
        [{
            'id': 1,
            'chain_id': uuid.uuid4(),
            'last_sequence': 0,
            'last_mac': GENESIS,
            'updated_at': datetime.now(UTC),
            'last_checkpoint_sequence': 0,
        }],
    )

    op.drop_table('audit_chain_head')
    if postgres:
        op.drop_column('audit_events', 'hash')
        op.drop_column('audit_events', 'prev_hash')
    else:
        # SQLite drops a column in place (3.35+); batch mode would rebuild the table and lose
        # its append-only triggers.
        op.execute('ALTER TABLE audit_events DROP COLUMN hash')
        op.execute('ALTER TABLE audit_events DROP COLUMN prev_hash')
    for statement in POSTGRES_UPGRADE if postgres else SQLITE_UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    """Back to the unkeyed chain: every event hashed again in sequence order, renumbered 1, 2,
    3, ... (PostgreSQL leaves numbers of rolled-back inserts unused; the old chain had none)."""
    bind = op.get_bind()
    postgres = bind.dialect.name == 'postgresql'
    for statement in POSTGRES_DOWNGRADE if postgres else SQLITE_DOWNGRADE:
        op.execute(statement)
    op.drop_table('audit_chain_state')
    op.drop_table('audit_chain_links')

    if postgres:
        op.add_column('audit_events', sa.Column('prev_hash', sa.String(length=64), nullable=True))
        op.add_column('audit_events', sa.Column('hash', sa.String(length=64), nullable=True))
        op.execute('ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete')
    else:
        op.execute("ALTER TABLE audit_events ADD COLUMN prev_hash VARCHAR(64) NOT NULL DEFAULT ''")
        op.execute("ALTER TABLE audit_events ADD COLUMN hash VARCHAR(64) NOT NULL DEFAULT ''")
        op.execute('DROP TRIGGER audit_events_no_update')
    prev_hash, sequence = GENESIS, 0
    for event in list(_events_in_order(bind, _events)):
        sequence += 1
        event_hash = _legacy_hash(prev_hash, event, sequence)
        bind.execute(
            sa.update(_legacy_events)
            .where(_legacy_events.c.id == event.id)
            .values(sequence=sequence, prev_hash=prev_hash, hash=event_hash)
        )
        prev_hash = event_hash
    if postgres:
        op.execute('ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_delete')
        op.alter_column('audit_events', 'prev_hash', nullable=False)
        op.alter_column('audit_events', 'hash', nullable=False)
    else:
        op.execute(SQLITE_EVENTS_NO_UPDATE)

    op.create_table('audit_chain_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('last_sequence', _position, nullable=False),
    sa.Column('last_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_chain_head'))
    )
    op.bulk_insert(_head, [{'id': 1, 'last_sequence': sequence, 'last_hash': prev_hash}])
