"""`POST /api/participants/import`: enroll participants from a CSV file.

Included before the participants router, so `/participants/import` is not read as an id.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile, status

from app.api.dependencies import (
    ActorContextDep,
    CurrentUser,
    EncryptorDep,
    SessionDep,
    SettingsDep,
)
from app.schemas.common import ErrorEnvelope
from app.schemas.participant_import import ImportReportRead
from app.services import participant_import as service

router = APIRouter(prefix="/participants", tags=["participants"])

_COLUMNS = ", ".join(service.IMPORT_COLUMNS)


@router.post(
    "/import",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": ImportReportRead, "description": "Dry run: every row is valid"},
        403: {"model": ErrorEnvelope, "description": "The study role cannot enroll"},
        404: {"model": ErrorEnvelope, "description": "No such study, or not visible"},
        409: {"model": ErrorEnvelope, "description": "A code was enrolled meanwhile"},
        413: {"model": ErrorEnvelope, "description": "The file is over the import limit"},
        422: {
            "model": ErrorEnvelope,
            "description": "A problem with the file, or invalid rows: the report is in "
            "`error.details`",
        },
    },
)
async def import_participants(
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    encryptor: EncryptorDep,
    principal: CurrentUser,
    context: ActorContextDep,
    study_id: Annotated[uuid.UUID, Form()],
    file: Annotated[
        UploadFile,
        File(description=f"CSV, UTF-8 (with or without BOM). Columns: {_COLUMNS}."),
    ],
    dry_run: Annotated[bool, Form()] = False,
) -> ImportReportRead:
    """Check every row of the file; create all the participants, or none when a row is invalid.

    `participant_id` is required; `site` is a site code or UUID; `enrollment_date` is YYYY-MM-DD;
    `status` is screened, enrolled or completed; `actor` is patient or caregiver.
    """
    # One byte over the limit is enough to refuse, without reading a larger file into memory.
    content = await file.read(service.MAX_IMPORT_BYTES + 1)
    report = await service.import_participants(
        session,
        settings,
        encryptor,
        context,
        principal,
        study_id,
        content,
        dry_run=dry_run,
    )
    if report.dry_run:
        response.status_code = status.HTTP_200_OK
    return ImportReportRead.model_validate(report.as_dict())
