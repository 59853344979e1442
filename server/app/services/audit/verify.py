"""Verifying the keyed chain: every link, the state row and every published checkpoint.

`verify_chain` first runs the chainer in the caller's transaction, so what it checks is the
whole committed trail, then holds the state row while it walks (no chainer or checkpoint can
move under it). It reports the first position that does not hold:

- a link whose MAC, with the key its `key_id` names, does not cover its event's content, its
  position and the previous link's MAC: an event rewritten, even with hashes recomputed
  without the key; a link or an event missing; an event where the chain recorded a gap;
- a state row that is missing or disagrees with the links (rewound, altered);
- a checkpoint beyond the chain's end (events and links deleted from the end, the state
  rewound to match), or whose MAC differs from the link's (the chain rewritten with the key).
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.models.audit import (
    CHAIN_STATE_ID,
    GENESIS_MAC,
    AuditChainLink,
    AuditChainState,
    AuditEvent,
)
from app.services.audit.chain import (
    AuditChainStateError,
    ChainSettings,
    chain_pending_events,
    gap_content,
    link_mac,
)
from app.services.audit.checkpoints import Checkpoint, CheckpointStoreError
from app.services.audit.events import canonical_event

VERIFY_BATCH_SIZE = 1000


@dataclass(frozen=True, slots=True)
class ChainVerification:
    valid: bool
    # Positions verified from the start: events, and gaps (numbers whose insert rolled back).
    events_checked: int
    first_broken_sequence: int | None = None
    first_broken_event_id: uuid.UUID | None = None
    problem: str | None = None
    # The MAC of the chain's last link when valid.
    last_hash: str | None = None
    verified_at: datetime | None = None
    last_sequence: int = 0
    gaps_checked: int = 0
    checkpoints_checked: int = 0
    # Committed events not chained yet: behind a number a running transaction still holds.
    events_pending: int = 0


@dataclass(frozen=True, slots=True)
class _Problem:
    sequence: int | None
    message: str
    event_id: uuid.UUID | None = None


def _link_problem(
    chain: ChainSettings,
    chain_id: uuid.UUID,
    expected_sequence: int,
    prev_mac: str,
    link: AuditChainLink,
    event: AuditEvent | None,
) -> _Problem | None:
    if link.sequence != expected_sequence:
        return _Problem(expected_sequence, f"the link of sequence {expected_sequence} is missing")
    event_id = link.event_id or (event.id if event is not None else None)
    if link.prev_mac != prev_mac:
        return _Problem(link.sequence, "prev_mac does not match the previous link's mac", event_id)
    key = chain.keyring.get(link.key_id)
    if key is None:
        return _Problem(
            link.sequence, f"the link is signed with key '{link.key_id}', which is not configured"
        )
    if link.event_id is None:
        if event is not None:
            return _Problem(
                link.sequence, "an event exists where the chain recorded a gap", event.id
            )
        content = gap_content(link.sequence)
    else:
        if event is None:
            return _Problem(link.sequence, "the linked event is missing", link.event_id)
        if event.id != link.event_id:
            return _Problem(
                link.sequence, "the event at this position is not the one linked", event.id
            )
        content = canonical_event(event)
    if link_mac(key, chain_id, link.sequence, prev_mac, content) != link.mac:
        return _Problem(link.sequence, "mac does not match the event's content", event_id)
    return None


async def verify_chain(
    session: AsyncSession, chain: ChainSettings, *, chain_first: bool = True
) -> ChainVerification:
    """Chain what is pending (unless `chain_first` is False), then check the whole chain."""
    if chain_first:
        # A damaged state is reported below, from the state row and the links themselves.
        with contextlib.suppress(AuditChainStateError):
            await chain_pending_events(session, chain)
    state = await session.scalar(
        select(AuditChainState)
        .where(AuditChainState.id == CHAIN_STATE_ID)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if state is None:
        return ChainVerification(
            valid=False,
            events_checked=0,
            problem="the audit chain state row is missing: the chain cannot be verified",
            verified_at=utcnow(),
        )
    problems: list[_Problem] = []
    try:
        checkpoints = await chain.checkpoints.read(state.chain_id)
    except CheckpointStoreError as exc:
        checkpoints = []
        problems.append(_Problem(None, f"the checkpoint store holds a damaged entry: {exc}"))
    wanted_macs = {checkpoint.sequence for checkpoint in checkpoints}
    macs_at: dict[int, str] = {}

    expected, prev_mac = 1, GENESIS_MAC
    events_checked = gaps_checked = 0
    walk_problem: _Problem | None = None
    while walk_problem is None:
        rows = (
            await session.execute(
                select(AuditChainLink, AuditEvent)
                .outerjoin(AuditEvent, AuditEvent.sequence == AuditChainLink.sequence)
                .where(AuditChainLink.sequence >= expected)
                .order_by(AuditChainLink.sequence)
                .limit(VERIFY_BATCH_SIZE)
                .execution_options(populate_existing=True)
            )
        ).all()
        if not rows:
            break
        for link, event in rows:
            walk_problem = _link_problem(chain, state.chain_id, expected, prev_mac, link, event)
            if walk_problem is not None:
                break
            if event is None:
                gaps_checked += 1
            else:
                events_checked += 1
            if link.sequence in wanted_macs:
                macs_at[link.sequence] = link.mac
            prev_mac = link.mac
            expected += 1
        # Verified rows need not stay in the identity map during a long walk.
        for link, event in rows:
            session.expunge(link)
            if event is not None:
                session.expunge(event)
    chain_end = expected - 1

    if walk_problem is not None:
        problems.append(walk_problem)
    elif (state.last_sequence, state.last_mac) != (chain_end, prev_mac):
        problems.append(
            _Problem(
                min(state.last_sequence, chain_end) + 1,
                f"the audit chain state (sequence {state.last_sequence}) disagrees with the "
                f"links (ending at {chain_end}): rewound or altered",
            )
        )
    problems += _checkpoint_problems(chain, checkpoints, macs_at, chain_end, walk_problem)

    events_pending = 0
    if walk_problem is None:
        events_pending = int(
            await session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.sequence > chain_end)
            )
            or 0
        )
    first = (
        # The earliest position first; a damaged checkpoint store only when the chain holds.
        min(problems, key=lambda problem: (problem.sequence is None, problem.sequence or 0))
        if problems
        else None
    )
    return ChainVerification(
        valid=first is None,
        events_checked=events_checked,
        first_broken_sequence=first.sequence if first else None,
        first_broken_event_id=first.event_id if first else None,
        problem=first.message if first else None,
        last_hash=prev_mac if first is None else None,
        verified_at=utcnow(),
        last_sequence=chain_end,
        gaps_checked=gaps_checked,
        checkpoints_checked=len(checkpoints),
        events_pending=events_pending,
    )


def _checkpoint_problems(
    chain: ChainSettings,
    checkpoints: list[Checkpoint],
    macs_at: dict[int, str],
    chain_end: int,
    walk_problem: _Problem | None,
) -> list[_Problem]:
    problems: list[_Problem] = []
    # Where the chain was last seen to agree with a checkpoint: a rewrite with the key lies
    # somewhere after it.
    agreed_up_to = 0
    for checkpoint in sorted(checkpoints, key=lambda checkpoint: checkpoint.sequence):
        described = (
            f"the checkpoint of {checkpoint.time.isoformat()} (sequence {checkpoint.sequence})"
        )
        signature_problem = checkpoint.signature_problem(chain.keyring)
        if signature_problem is not None:
            problems.append(_Problem(checkpoint.sequence, f"{described} {signature_problem}"))
            continue
        if walk_problem is not None and checkpoint.sequence >= (walk_problem.sequence or 0):
            continue
        if checkpoint.sequence > chain_end:
            problems.append(
                _Problem(
                    chain_end + 1,
                    f"the chain ends at sequence {chain_end} but {described} covers more: "
                    "events were removed from its end",
                )
            )
            continue
        if macs_at.get(checkpoint.sequence) != checkpoint.mac:
            problems.append(
                _Problem(
                    agreed_up_to + 1,
                    f"the chain up to sequence {checkpoint.sequence} differs from {described}: "
                    "it was rewritten after the checkpoint",
                )
            )
            continue
        agreed_up_to = max(agreed_up_to, checkpoint.sequence)
    return problems
