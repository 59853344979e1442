"""The audit trail: events written in the caller's transaction, a keyed chain linked afterwards
by a single chainer, signed checkpoints published outside the database, and the verifier.

- `events`: `AuditContext`, `record_event` (one INSERT), `list_events`, `canonical_event`;
- `chain`: `chain_pending_events` and `publish_due_checkpoint` (the periodic task, and
  verification), `ChainSettings`;
- `checkpoints`: signed checkpoints and where they are stored;
- `verify`: `verify_chain`.

Why it is built this way: docs/adr/0004-audit-chain.md.
"""

from app.services.audit.chain import (
    AuditChainStateError,
    ChainRun,
    ChainSettings,
    chain_pending_events,
    publish_due_checkpoint,
    run_chainer,
)
from app.services.audit.checkpoints import (
    Checkpoint,
    CheckpointStore,
    CheckpointStoreError,
    FileCheckpointStore,
)
from app.services.audit.events import (
    AuditContext,
    RecordedEvent,
    canonical_event,
    list_events,
    record_event,
)
from app.services.audit.keys import ChainKey, ChainKeyring, warn_if_derived
from app.services.audit.verify import ChainVerification, verify_chain

__all__ = [
    "AuditChainStateError",
    "AuditContext",
    "ChainKey",
    "ChainKeyring",
    "ChainRun",
    "ChainSettings",
    "ChainVerification",
    "Checkpoint",
    "CheckpointStore",
    "CheckpointStoreError",
    "FileCheckpointStore",
    "RecordedEvent",
    "canonical_event",
    "chain_pending_events",
    "list_events",
    "publish_due_checkpoint",
    "record_event",
    "run_chainer",
    "verify_chain",
    "warn_if_derived",
]
