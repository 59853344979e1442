from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, MetaData, Table, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.db.base import UTCDateTime
from app.db.concurrent_writes import insert_unless_present, is_unique_violation
from app.models.participant import Participant, ParticipantStatus
from app.models.study import Study
from tests import factories

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


async def test_unique_violations_are_told_apart_from_other_integrity_errors(
    db_session: AsyncSession,
) -> None:
    study = await factories.study(db_session)
    refusals: list[IntegrityError] = []
    for row in (
        Study(id=uuid.uuid4(), code=study.code, name="Same code", config={}),
        Participant(
            id=uuid.uuid4(),
            study_id=uuid.uuid4(),  # no such study
            participant_code="P1",
            status=ParticipantStatus.ENROLLED,
            language="en",
            timezone="UTC",
        ),
    ):
        with pytest.raises(IntegrityError) as refused:
            async with db_session.begin_nested():
                db_session.add(row)
                await db_session.flush()
        refusals.append(refused.value)
    assert [is_unique_violation(error) for error in refusals] == [True, False]


async def test_an_insert_unless_present_stores_once(db_session: AsyncSession) -> None:
    study = await factories.study(db_session)
    again = insert_unless_present(db_session, Study).values(
        id=study.id, code="OTHER", name="Other", config={}
    )
    assert (await db_session.execute(again.returning(Study.id))).all() == []
    await db_session.refresh(study)
    assert study.code != "OTHER"
