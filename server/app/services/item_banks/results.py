"""The task result of a finished adaptive test, and its rescoring (docs/item-banks.md).

A finished test is stored like any other task of its assessment session: a `TaskResult` named
`item-bank-<bank id>` with the scores `theta`, `se`, `t_score` and `n_items`, its flags, the
scorer `irt-eap` at `SCORER_VERSION`, and a source document holding the responses, the bank
version and what a device reported, from which `rescore_result` recomputes it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ConflictError
from app.core.json_values import to_json_value
from app.models.assessment import AssessmentSession, TaskResult
from app.models.item_bank import CatSession, ItemBankVersion
from app.scoring import device_estimate_flag
from app.scoring.irt import Estimate, eap, t_score
from app.services.item_banks.cat import SCORER_VERSION, Response, paired_responses
from app.services.item_banks.content import irt_items
from app.services.outbox.announce import announce_tasks_accepted
from app.services.source_storage import SourceStorage

SCORER: Final = "irt-eap"
TASK_PREFIX: Final = "item-bank-"


def scorer_version() -> str:
    """The estimator's version (`cat.SCORER_VERSION`), for rescoring outside this package."""
    return SCORER_VERSION


def task_name(bank_id: uuid.UUID) -> str:
    """The task a bank's test is stored as in its assessment session."""
    return f"{TASK_PREFIX}{bank_id}"


@dataclass(frozen=True, slots=True)
class DeviceEstimate:
    theta: float
    se: float


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _responses_json(responses: Sequence[Response]) -> list[dict[str, Any]]:
    return [{"item_id": r.item_id, "response": r.response} for r in responses]


def scores_of(estimate: Estimate, n_items: int) -> dict[str, Any]:
    return {
        "theta": estimate.theta,
        "se": estimate.se,
        "t_score": t_score(estimate.theta),
        "n_items": n_items,
    }


def flags_of(task: str, estimate: Estimate, device: DeviceEstimate | None) -> list[dict[str, Any]]:
    if device is None:
        return []
    flag = device_estimate_flag(
        task,
        server_theta=estimate.theta,
        server_se=estimate.se,
        device_theta=device.theta,
        device_se=device.se,
    )
    if flag is None:
        return []
    return [{"code": flag.code, "task": flag.task, "evidence": to_json_value(flag.evidence)}]


async def store_result(
    session: AsyncSession,
    storage: SourceStorage,
    record: AssessmentSession,
    cat: CatSession,
    responses: Sequence[Response],
    estimate: Estimate,
    device: DeviceEstimate | None,
    received_at: datetime,
) -> TaskResult:
    """The finished test's task result and source document (durable before the commit)."""
    task = task_name(cat.bank_id)
    taken = await session.scalar(
        select(TaskResult.id).where(TaskResult.session_id == record.id, TaskResult.task == task)
    )
    if taken is not None:
        raise ConflictError(
            "The assessment session already holds a result for this item bank",
            details={"session_id": str(record.id), "task": task},
        )
    content = {
        "cat_session_id": str(cat.id),
        "bank_id": str(cat.bank_id),
        "bank_version": cat.bank_version,
        "origin": cat.origin.value,
        "responses": _responses_json(responses),
        "device_estimate": (
            {"theta": device.theta, "se": device.se} if device is not None else None
        ),
    }
    document = _canonical(
        {
            **content,
            "session_id": str(record.id),
            "task": task,
            "received_at": received_at.isoformat(),
        }
    )
    result = TaskResult(
        id=uuid.uuid4(),
        session_id=record.id,
        task=task,
        content_hash=hashlib.sha256(_canonical(content)).hexdigest(),
        n_trials=len(responses),
        client_summary=content["device_estimate"],
        scores=scores_of(estimate, len(responses)),
        flags=flags_of(task, estimate, device),
        scorer=SCORER,
        scorer_version=SCORER_VERSION,
        previous_scores=[],
        accepted_at=received_at,
        completed_at=cat.finished_at,
    )
    path = SourceStorage.source_path(
        record.study_id, record.participant_id, record.id, task, result.id
    )
    pending = storage.write_for_transaction(session, [(path, document)])
    [stored] = pending.documents
    result.source_path = stored.relative_path
    result.source_sha256 = stored.sha256
    result.source_bytes = stored.size
    session.add(result)
    await session.flush()
    await announce_tasks_accepted(session, record, [result])
    # The document is durable before the commit that makes the row point at it.
    await pending.wait()
    return result


async def rescore_result(
    session: AsyncSession, result: TaskResult, document: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The scores and flags of a stored test recomputed from its source document, against the
    bank version it ran on, with the current estimator."""
    version = await session.scalar(
        select(ItemBankVersion).where(
            ItemBankVersion.bank_id == uuid.UUID(document["bank_id"]),
            ItemBankVersion.version == document["bank_version"],
        )
    )
    assert version is not None  # versions are never deleted while a result points at them
    responses = [Response(r["item_id"], r["response"]) for r in document["responses"]]
    estimate = eap(paired_responses(irt_items(version.items), responses))
    device_raw = document.get("device_estimate")
    device = DeviceEstimate(device_raw["theta"], device_raw["se"]) if device_raw else None
    return scores_of(estimate, len(responses)), flags_of(result.task, estimate, device)
