"""Pages of a delivery log: the same order and sort keys for every destination's log."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Row, Select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.outbox import OutboxDelivery, OutboxEvent
from app.schemas.common import PageParams, Pagination
from app.services.pagination import paginate_rows


async def page_of_deliveries(
    session: AsyncSession,
    statement: Select[OutboxDelivery, OutboxEvent],
    params: PageParams,
) -> tuple[Sequence[Row[OutboxDelivery, OutboxEvent]], Pagination]:
    """One page of (delivery, event) rows, newest first unless `params` sorts otherwise by
    `created_at`, `last_attempt_at` or `status`."""
    return await paginate_rows(
        session,
        statement,
        params,
        sortable={
            "created_at": OutboxDelivery.created_at,
            "last_attempt_at": OutboxDelivery.last_attempt_at,
            "status": OutboxDelivery.status,
        },
        default_sort="created_at",
        tie_breaker=OutboxDelivery.id,
    )
