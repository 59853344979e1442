from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, MetaData, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.base import UTCDateTime

_metadata = MetaData()
_probe = Table("utc_probe", _metadata, Column("at", UTCDateTime()), prefixes=["TEMPORARY"])


async def test_timestamps_come_back_aware_utc(db_connection: AsyncConnection) -> None:
    await db_connection.run_sync(_metadata.create_all)
    paris = timezone(timedelta(hours=2))
    moment = datetime(2026, 6, 1, 14, 30, tzinfo=paris)
    await db_connection.execute(_probe.insert().values(at=moment))
    stored = (await db_connection.execute(select(_probe.c.at))).scalar_one()
    assert stored.tzinfo is not None
    assert stored.utcoffset() == timedelta(0)
    assert stored == moment
    assert stored == datetime(2026, 6, 1, 12, 30, tzinfo=UTC)


async def test_naive_datetimes_are_refused(db_connection: AsyncConnection) -> None:
    await db_connection.run_sync(_metadata.create_all)
    with pytest.raises(Exception, match="naive datetime"):
        await db_connection.execute(_probe.insert().values(at=datetime(2026, 1, 1)))
