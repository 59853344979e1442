"""10,000 rows in one request: one multi-row INSERT, contact details encrypted at rest."""

from __future__ import annotations

import time

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.logging import get_logger
from app.core.security import FieldEncryptor
from app.models.participant import Participant
from app.services.participants import email_index
from tests.participant_import.conftest import World, csv_bytes, upload

ROWS = 10_000
# Generous: the import takes a few seconds on either database (see
# docs/participants-import-and-links.md); this only catches a return to per-row inserts.
TIME_BUDGET_SECONDS = 60.0

logger = get_logger(__name__)


async def test_ten_thousand_rows_import_in_one_request(
    client: httpx.AsyncClient, world: World, db_session: AsyncSession, settings: Settings
) -> None:
    study = await world.study(languages=("en", "fr"))
    await world.site(study, "PARIS", "Europe/Paris")
    await world.site(study, "LYON", "Europe/Paris")
    researcher = await world.researcher_of(study)
    header = ("participant_id", "site", "email", "phone", "enrollment_date", "status", "language")
    rows = [
        [
            f"P{n:05d}",
            "PARIS" if n % 2 else "LYON",
            f"participant.{n}@example.org",
            f"+33 6 00 {n:05d}",
            "2024-01-15",
            "enrolled" if n % 3 else "screened",
            "fr" if n % 4 else "en",
        ]
        for n in range(ROWS)
    ]
    content = csv_bytes(header, rows)

    started = time.perf_counter()
    response = await upload(client, researcher, study.id, content)
    elapsed = time.perf_counter() - started

    assert response.status_code == 201, response.text[:2000]
    body = response.json()
    assert (body["created"], body["total_rows"], body["valid"]) == (ROWS, ROWS, True)
    assert len(body["rows"]) == ROWS
    assert elapsed < TIME_BUDGET_SECONDS, elapsed
    logger.warning(
        "participant_import_timing",
        rows=ROWS,
        seconds=round(elapsed, 2),
        database=db_session.get_bind().dialect.name,
    )

    count = await db_session.scalar(
        select(func.count()).select_from(Participant).where(Participant.study_id == study.id)
    )
    assert count == ROWS
    raw_rows = (
        await db_session.execute(
            text(
                "SELECT participant_code, email_encrypted, email_index, phone_encrypted"
                " FROM participants WHERE participant_code IN ('P00001', 'P09999')"
                " ORDER BY participant_code"
            )
        )
    ).all()
    assert [r[0] for r in raw_rows] == ["P00001", "P09999"]
    encryptor = FieldEncryptor.from_settings(settings)
    for code, email_encrypted, index, phone_encrypted in raw_rows:
        number = int(code[1:])
        address = f"participant.{number}@example.org"
        assert "@" not in email_encrypted and "example" not in email_encrypted
        assert encryptor.decrypt(email_encrypted) == address
        assert index == email_index(settings, address)
        assert encryptor.decrypt(phone_encrypted) == f"+33 6 00 {number:05d}"
    clear = await db_session.scalar(
        select(func.count())
        .select_from(Participant)
        .where(Participant.study_id == study.id)
        .where(Participant.email_encrypted.like("%@%"))
    )
    assert clear == 0

    [event] = await world.import_events(study)
    after = event.after or {}
    assert after["created"] == ROWS and len(after["participants"]) == ROWS
    assert after["by_site"] == {"PARIS": ROWS // 2, "LYON": ROWS // 2}
