"""Row validation: every kind of bad row is reported on its row, and nothing is written."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import Uuid, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.clock import utcnow
from app.core.security import FieldEncryptor
from app.models.participant import Participant
from app.schemas.participants import ParticipantCreate
from app.services import participant_import
from app.services.participants import email_index
from tests.participant_import.conftest import World, csv_bytes, error_of, upload

HEADER = (
    "participant_id",
    "site",
    "email",
    "phone",
    "enrollment_date",
    "status",
    "actor",
    "language",
    "timezone",
)


def _errors_by_row(details: dict[str, Any]) -> dict[int, list[tuple[str | None, str]]]:
    return {
        row["row"]: [(error["field"], error["message"]) for error in row["errors"]]
        for row in details["rows"]
    }


async def test_each_kind_of_bad_row_is_reported_on_its_row(
    client: httpx.AsyncClient, world: World
) -> None:
    study = await world.study(languages=("en", "fr"))
    await world.site(study, "PARIS", "Europe/Paris")
    await world.participant(study, "EXISTING")
    researcher = await world.researcher_of(study)
    rows = [
        ["P001", "PARIS", "ok@example.org", "+33 6 12 34 56 78", "2024-03-01", "", "", "", ""],
        ["P001", "", "", "", "", "", "", "", ""],  # 2: duplicate in the file
        ["EXISTING", "", "", "", "", "", "", "", ""],  # 3: duplicate in the study
        ["P004", "", "not-an-email", "", "", "", "", "", ""],  # 4: bad email
        ["P005", "LYON", "", "", "", "", "", "", ""],  # 5: unknown site
        ["P006", "", "", "", "", "", "", "de", ""],  # 6: unsupported language
        ["P007", "", "", "", "2024-13-01", "", "", "", ""],  # 7: bad date
        ["P008", "", "", "", "", "", "", "", "Mars/Olympus"],  # 8: bad time zone
        ["P009", "", "", "", "", "active", "", "", ""],  # 9: bad status
        ["P010", "", "", "", "", "withdrawn", "", "", ""],  # 10: withdrawn
        ["P011", "", "", "", "", "", "robot", "", ""],  # 11: bad actor
        ["", "PARIS", "", "", "", "", "", "", ""],  # 12: missing code
        ["P013", "", "", "call me", "", "", "", "", ""],  # 13: bad phone
        ["P 014", "", "", "", "", "", "", "", ""],  # 14: bad code format
        ["P015", "", "", "", "01/02/2024", "", "", "", "", "surplus"],  # 15: extra value
        ["P016", "", "", "", "", "", "", "", ""],  # 16: fine
    ]
    response = await upload(client, researcher, study.id, csv_bytes(HEADER, rows))

    error = error_of(response, 422, "VALIDATION_ERROR")
    details = error["details"]
    assert details["valid"] is False and details["dry_run"] is False
    assert details["total_rows"] == 16 and details["created"] == 0
    assert error["message"] == "14 of 16 rows are invalid; nothing was imported"
    errors = _errors_by_row(details)
    fields = {row: [field for field, _ in found] for row, found in errors.items()}
    assert fields == {
        1: [],
        2: ["participant_id"],
        3: ["participant_id"],
        4: ["email"],
        5: ["site"],
        6: ["language"],
        7: ["enrollment_date"],
        8: ["timezone"],
        9: ["status"],
        10: ["status"],
        11: ["actor"],
        12: ["participant_id"],
        13: ["phone"],
        14: ["participant_id"],
        15: ["enrollment_date", None],
        16: [],
    }
    assert errors[2] == [("participant_id", "Duplicate code in the file: also on row 1")]
    assert errors[3] == [
        ("participant_id", "A participant with this code already exists in the study")
    ]
    assert "@" in errors[4][0][1]  # email_validator's explanation
    assert errors[5] == [("site", "Unknown site 'LYON' for this study")]
    assert errors[6] == [("language", "'de' is not one of the study's languages (en, fr)")]
    assert errors[7] == [("enrollment_date", "Use an ISO date, YYYY-MM-DD")]
    assert errors[8] == [("timezone", "'Mars/Olympus' is not an IANA time zone")]
    assert errors[9] == [("status", "Use one of: screened, enrolled, completed")]
    assert "withdraw" in errors[10][0][1].lower()
    assert errors[11] == [("actor", "Use one of: patient, caregiver")]
    assert errors[12] == [("participant_id", "The participant code is required")]
    assert errors[15][1] == (None, "The row has more values than the header has columns")

    by_row = {row["row"]: row for row in details["rows"]}
    assert by_row[1]["status"] == "valid" and by_row[16]["status"] == "valid"
    assert by_row[4]["status"] == "invalid" and by_row[4]["participant_id"] == "P004"
    assert by_row[12]["participant_id"] is None
    assert by_row[1]["line"] == 2 and by_row[16]["line"] == 17  # the header is line 1
    assert "ok@example.org" not in response.text  # the report never echoes contact details

    assert await world.participant_count(study) == 1  # only the pre-existing one
    assert await world.import_events(study) == []


async def test_one_invalid_row_sinks_the_whole_file(
    client: httpx.AsyncClient, world: World
) -> None:
    study = await world.study()
    researcher = await world.researcher_of(study)
    rows = [[f"P{n:03d}", f"p{n}@example.org"] for n in range(1, 6)] + [["P006", "broken@"]]
    response = await upload(
        client, researcher, study.id, csv_bytes(("participant_id", "email"), rows)
    )
    details = error_of(response, 422, "VALIDATION_ERROR")["details"]
    assert [row["status"] for row in details["rows"]] == ["valid"] * 5 + ["invalid"]
    assert await world.participant_count(study) == 0
    assert await world.import_events(study) == []


async def test_dry_run_reports_and_writes_nothing(client: httpx.AsyncClient, world: World) -> None:
    study = await world.study()
    researcher = await world.researcher_of(study)
    content = csv_bytes(("participant_id", "email"), [["P001", "a@example.org"], ["P002", ""]])
    response = await upload(client, researcher, study.id, content, dry_run=True)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "dry_run": True,
        "valid": True,
        "total_rows": 2,
        "created": 0,
        "rows": [
            {"row": 1, "line": 2, "participant_id": "P001", "status": "valid", "errors": []},
            {"row": 2, "line": 3, "participant_id": "P002", "status": "valid", "errors": []},
        ],
    }
    assert await world.participant_count(study) == 0
    assert await world.import_events(study) == []

    # The same file without dry_run imports.
    response = await upload(client, researcher, study.id, content, dry_run=False)
    assert response.status_code == 201, response.text
    assert response.json()["created"] == 2
    assert await world.participant_count(study) == 2


async def test_invalid_dry_run_answers_422_with_the_report(
    client: httpx.AsyncClient, world: World
) -> None:
    study = await world.study()
    researcher = await world.researcher_of(study)
    content = csv_bytes(("participant_id", "status"), [["P001", "enrolled"], ["P002", "gone"]])
    details = error_of(
        await upload(client, researcher, study.id, content, dry_run=True), 422, "VALIDATION_ERROR"
    )["details"]
    assert details["dry_run"] is True and details["valid"] is False
    assert details["rows"][1]["errors"] == [
        {"field": "status", "message": "Use one of: screened, enrolled, completed"}
    ]


async def test_created_participants_have_the_enrollment_defaults_and_encrypted_contacts(
    client: httpx.AsyncClient, world: World, db_session: AsyncSession, settings: Settings
) -> None:
    study = await world.study(languages=("fr", "en"))
    await world.site(study, "PARIS", "Europe/Paris")
    researcher = await world.researcher_of(study)
    header = ("participant_id", "site", "email", "phone", "status", "actor", "language")
    rows = [
        ["P001", "PARIS", "Ada.Lovelace@Example.ORG", "+44 20 7946 0000", "", "", ""],
        ["P002", "paris", "", "", "Screened", "CAREGIVER", "EN"],  # case-insensitive values
        ["P003", "", "", "", "completed", "patient", "en"],
    ]
    response = await upload(client, researcher, study.id, csv_bytes(header, rows))
    assert response.status_code == 201, response.text
    assert response.json()["created"] == 3 and response.json()["valid"] is True

    participants = {
        p.participant_code: p
        for p in (
            await db_session.scalars(
                select(Participant)
                .where(Participant.study_id == study.id)
                .execution_options(populate_existing=True)
            )
        ).all()
    }
    p1, p2, p3 = participants["P001"], participants["P002"], participants["P003"]
    assert (p1.status, p1.actor, p1.language, p1.timezone) == (
        "enrolled",
        "patient",
        "fr",
        "Europe/Paris",
    )
    assert p1.enrollment_date == utcnow().date()
    assert (p2.status, p2.actor, p2.language, p2.site_id) == (
        "screened",
        "caregiver",
        "en",
        p1.site_id,
    )
    assert p2.enrollment_date is None  # only enrolled participants default to today
    assert (p3.site_id, p3.timezone, p3.status) == (None, "UTC", "completed")

    encryptor = FieldEncryptor.from_settings(settings)
    assert p1.email_encrypted is not None and p1.phone_encrypted is not None
    assert encryptor.decrypt(p1.email_encrypted) == "Ada.Lovelace@example.org"
    assert encryptor.decrypt(p1.phone_encrypted) == "+44 20 7946 0000"
    assert p1.email_index == email_index(settings, "ada.lovelace@example.org")
    raw = (
        await db_session.execute(
            text("SELECT email_encrypted, phone_encrypted FROM participants WHERE id = :id")
            .bindparams(bindparam("id", type_=Uuid()))
            .params(id=p1.id)
        )
    ).one()
    assert "Lovelace" not in raw[0] and "7946" not in raw[1]

    [event] = await world.import_events(study)
    assert event.category == "data" and event.actor_id == str(researcher.user_id)
    assert event.entity_type == "study" and event.entity_id == str(study.id)
    after = event.after or {}
    assert after["rows"] == 3 and after["created"] == 3
    assert after["by_status"] == {"enrolled": 1, "screened": 1, "completed": 1}
    assert after["by_site"] == {"PARIS": 2, "": 1}
    assert after["with_email"] == 1 and after["with_phone"] == 1
    assert after["participants"] == {code: str(p.id) for code, p in participants.items()}
    assert "Lovelace" not in str(after).lower() and "7946" not in str(after)


async def test_enrollment_date_is_kept_when_given(client: httpx.AsyncClient, world: World) -> None:
    study = await world.study()
    researcher = await world.researcher_of(study)
    content = csv_bytes(("participant_id", "enrollment_date"), [["P001", "2023-02-28"]])
    assert (await upload(client, researcher, study.id, content)).status_code == 201
    participant = await world.session.scalar(
        select(Participant).where(Participant.study_id == study.id)
    )
    assert participant is not None and participant.enrollment_date == date(2023, 2, 28)


@pytest.mark.parametrize(
    "code",
    ["P001", "a", "A-1.b_2", "-P", "P 1", "P/1", "", "x" * 64, "x" * 65, "Ünï", "P1\n"],
)
def test_code_rule_matches_single_enrollment(code: str) -> None:
    """The import applies ParticipantCreate's rule for participant codes."""
    single = _accepted({"participant_id": code})
    imported = len(code) <= participant_import.PARTICIPANT_CODE_MAX_LENGTH and bool(
        participant_import.PARTICIPANT_CODE_PATTERN.fullmatch(code)
    )
    assert imported == single


@pytest.mark.parametrize(
    "phone", ["+33 6 12 34 56 78", "(555) 010-0000", "123", "1234", "+" + "1" * 32, "abc", "12.34"]
)
def test_phone_rule_matches_single_enrollment(phone: str) -> None:
    single = _accepted({"participant_id": "P1", "phone": phone})
    imported = len(phone) <= participant_import.PHONE_MAX_LENGTH and bool(
        participant_import.PHONE_PATTERN.fullmatch(phone)
    )
    assert imported == single


def _accepted(values: dict[str, str]) -> bool:
    try:
        ParticipantCreate.model_validate(
            {"study_id": "00000000-0000-0000-0000-000000000000", **values}
        )
    except ValidationError:
        return False
    return True
