"""Problems with the file as a whole: columns, encoding, delimiters, size and row limits."""

from __future__ import annotations

import httpx
import pytest

from app.config import Settings
from app.services import participant_import
from tests.participant_import.conftest import World, csv_bytes, error_of, upload


async def test_unknown_columns_are_named(client: httpx.AsyncClient, world: World) -> None:
    study = await world.study()
    researcher = await world.researcher_of(study)
    content = csv_bytes(("participant_id", "Email", "name", "dob"), [["P001", "", "Ada", "1815"]])
    error = error_of(await upload(client, researcher, study.id, content), 422, "VALIDATION_ERROR")
    assert error["message"] == "Unknown columns: name, dob"
    assert error["details"]["unknown_columns"] == ["name", "dob"]
    assert "participant_id" in error["details"]["allowed_columns"]
    assert await world.participant_count(study) == 0


async def test_missing_and_duplicated_columns(client: httpx.AsyncClient, world: World) -> None:
    study = await world.study()
    researcher = await world.researcher_of(study)
    missing = csv_bytes(("email",), [["a@example.org"]])
    error = error_of(await upload(client, researcher, study.id, missing), 422, "VALIDATION_ERROR")
    assert error["details"]["missing_columns"] == ["participant_id"]
    twice = csv_bytes(("participant_id", "email", "EMAIL"), [["P1", "", ""]])
    error = error_of(await upload(client, researcher, study.id, twice), 422, "VALIDATION_ERROR")
    assert error["details"]["duplicated_columns"] == ["email"]


async def test_byte_order_mark_and_crlf_are_handled(
    client: httpx.AsyncClient, world: World
) -> None:
    study = await world.study()
    researcher = await world.researcher_of(study)
    content = csv_bytes(("participant_id", "email"), [["P001", "a@example.org"]], bom=True)
    assert content.startswith(b"\xef\xbb\xbfparticipant_id")
    response = await upload(client, researcher, study.id, content)
    assert response.status_code == 201, response.text
    assert response.json()["rows"][0]["participant_id"] == "P001"


async def test_semicolons_blank_lines_and_trailing_empty_columns(
    client: httpx.AsyncClient, world: World
) -> None:
    study = await world.study()
    researcher = await world.researcher_of(study)
    content = b'participant_id;language;;\nP001;en;;\n\n;;;\n"P002";"fr";;\n'
    response = await upload(client, researcher, study.id, content)
    assert response.status_code == 201, response.text
    rows = response.json()["rows"]
    assert [(r["row"], r["line"], r["participant_id"]) for r in rows] == [
        (1, 2, "P001"),
        (2, 5, "P002"),
    ]


async def test_not_utf8_is_422(client: httpx.AsyncClient, world: World) -> None:
    study = await world.study()
    researcher = await world.researcher_of(study)
    content = "participant_id,language\nP001,fr\nP002,Français\n".encode("latin-1")
    error = error_of(await upload(client, researcher, study.id, content), 422, "VALIDATION_ERROR")
    assert "UTF-8" in error["message"]


async def test_utf16_or_nul_characters_are_422(client: httpx.AsyncClient, world: World) -> None:
    study = await world.study()
    researcher = await world.researcher_of(study)
    for content in ("participant_id\nP001\n".encode("utf-16-le"), b"participant_id\nP\x0001\n"):
        error = error_of(
            await upload(client, researcher, study.id, content), 422, "VALIDATION_ERROR"
        )
        assert "NUL" in error["message"]
    assert await world.participant_count(study) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty"),
        (b"\n\n", "The file is empty"),
        (b"participant_id,email\r\n", "The file has a header but no participant rows"),
    ],
)
async def test_empty_files_are_422(
    client: httpx.AsyncClient, world: World, content: bytes, message: str
) -> None:
    study = await world.study()
    researcher = await world.researcher_of(study)
    error = error_of(await upload(client, researcher, study.id, content), 422, "VALIDATION_ERROR")
    assert error["message"] == message


async def test_file_over_the_size_limit_is_413(
    client: httpx.AsyncClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = await world.study()
    researcher = await world.researcher_of(study)
    monkeypatch.setattr(participant_import, "MAX_IMPORT_BYTES", 1024)
    content = csv_bytes(("participant_id",), [[f"P{n:05d}"] for n in range(200)])
    assert len(content) > 1024
    error = error_of(await upload(client, researcher, study.id, content), 413, "PAYLOAD_TOO_LARGE")
    assert error["details"] == {"limit_bytes": 1024}
    assert await world.participant_count(study) == 0


def test_size_limit_is_below_the_body_limit() -> None:
    body_limit = Settings.model_fields["MAX_REQUEST_BODY_BYTES"].default
    assert body_limit > participant_import.MAX_IMPORT_BYTES


async def test_too_many_rows_is_422(
    client: httpx.AsyncClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = await world.study()
    researcher = await world.researcher_of(study)
    monkeypatch.setattr(participant_import, "MAX_IMPORT_ROWS", 5)
    ok = csv_bytes(("participant_id",), [[f"P{n}"] for n in range(5)])
    assert (await upload(client, researcher, study.id, ok, dry_run=True)).status_code == 200
    over = csv_bytes(("participant_id",), [[f"P{n}"] for n in range(6)])
    error = error_of(await upload(client, researcher, study.id, over), 422, "VALIDATION_ERROR")
    assert error["details"] == {"max_rows": 5}
    assert "split" in error["message"]


async def test_missing_file_or_study_is_422(client: httpx.AsyncClient, world: World) -> None:
    study = await world.study()
    researcher = await world.researcher_of(study)
    response = await client.post(
        "/api/participants/import", headers=researcher.headers, data={"study_id": str(study.id)}
    )
    error_of(response, 422, "VALIDATION_ERROR")
    response = await client.post(
        "/api/participants/import",
        headers=researcher.headers,
        data={"study_id": "not-a-uuid"},
        files={"file": ("p.csv", b"participant_id\nP1\n", "text/csv")},
    )
    error_of(response, 422, "VALIDATION_ERROR")
