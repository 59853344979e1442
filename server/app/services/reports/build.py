"""The worker's entry point for a report job: read its data, draw the PDF, hash the file.

Reading happens in the worker's read-only transaction; drawing (pure, CPU-bound) runs in a
thread so the worker's event loop stays free for its progress updates.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.security import FieldEncryptor
from app.models.export import ExportJob
from app.services.exports.jobs import PARTICIPANT_REPORT
from app.services.exports.writers import WrittenFile
from app.services.reports import content
from app.services.reports.render import render_participant_report, render_study_report


async def write_report(
    session: AsyncSession, settings: Settings, job: ExportJob, target: Path
) -> WrittenFile:
    """Write the job's PDF to `target`: its size and SHA-256 (and `rows` 1: a report is one
    step of progress)."""
    if job.dataset == PARTICIPANT_REPORT:
        encryptor = FieldEncryptor.from_settings(settings) if job.include_contact_details else None
        participant = await content.participant_report(session, job, encryptor)
        pdf = await asyncio.to_thread(render_participant_report, participant)
    else:
        study = await content.study_report(session, job)
        pdf = await asyncio.to_thread(render_study_report, study)
    await asyncio.to_thread(_write, target, pdf)
    return WrittenFile(size_bytes=len(pdf), sha256=hashlib.sha256(pdf).hexdigest(), rows=1)


def _write(target: Path, data: bytes) -> None:
    with target.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
