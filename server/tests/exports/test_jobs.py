"""Export jobs through the HTTP API, run by the function the `exports` Celery task calls."""

from __future__ import annotations

import hashlib
import io
import uuid
from datetime import timedelta

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.models.audit import AuditEvent
from app.models.export import ExportJob
from app.services.exports.jobs import sweep_expired_exports
from tests.exports.conftest import (
    FORMULA_EMAIL,
    FORMULA_SITE,
    Runner,
    World,
    attach_visit,
    create,
    export_archive,
    read_csv,
    read_jsonl,
)


async def _audit_actions(db_session: AsyncSession, export_id: str) -> list[str]:
    rows = await db_session.scalars(
        select(AuditEvent.action)
        .where(AuditEvent.entity_type == "export", AuditEvent.entity_id == export_id)
        .order_by(AuditEvent.sequence)
    )
    return list(rows.all())


async def test_trials_csv_holds_every_trial_in_scope_spreadsheet_safe(
    client: httpx.AsyncClient, world: World, runner: Runner, db_session: AsyncSession
) -> None:
    body = {"study_id": world.study_id, "format": "csv", "dataset": "trials"}
    job, archive = await export_archive(client, runner, world.researcher.headers, body)
    assert sorted(archive.namelist()) == [
        "codebook.csv",
        "codebook.json",
        "export.json",
        "trials.csv",
    ]
    rows = read_csv(archive, "trials.csv")
    # A1 and B1: 10 simple-RT and 12 flanker trials each; W1 withdrew with deletion: absent.
    assert len(rows) == 44
    assert {row["participant_code"] for row in rows} == {"A1", "B1"}
    assert job["progress"] == {"rows_done": 44, "rows_total": 44, "percent": 100.0}
    first = next(
        row
        for row in rows
        if row["participant_code"] == "A1"
        and row["task"] == "simple-rt"
        and row["trial_index"] == "0"
    )
    assert first["rt"] == "300.0"
    assert first["response"] == "'=1+2"  # neutralised for spreadsheets
    assert first["site_code"] == "S1"
    assert first["is_practice"] == "false"
    assert first["battery_version"] == "1"
    assert first["session_id"] == world.session_ids["A1"]
    assert first["scorer_version"] != ""
    second = next(
        row
        for row in rows
        if row["participant_code"] == "A1"
        and row["task"] == "simple-rt"
        and row["trial_index"] == "1"
    )
    assert second["response"] == "'-SUM(A1)"
    # The file is what the job says: size and hash.
    downloaded = await client.get(
        f"/api/exports/{job['id']}/download", headers=world.researcher.headers
    )
    assert len(downloaded.content) == job["size_bytes"]
    assert hashlib.sha256(downloaded.content).hexdigest() == job["sha256"]
    assert downloaded.headers["x-content-sha256"] == job["sha256"]
    # Codebook: every column of the table, with type and unit.
    codebook = read_csv(archive, "codebook.csv")
    assert [entry["name"] for entry in codebook] == list(rows[0].keys())
    rt = next(entry for entry in codebook if entry["name"] == "rt")
    assert (rt["type"], rt["unit"]) == ("number", "ms")
    assert all(entry["meaning"] for entry in codebook)
    # Created, ready (with the hash) and each of the two downloads: audit events.
    assert await _audit_actions(db_session, job["id"]) == [
        "export.created",
        "export.ready",
        "export.downloaded",
        "export.downloaded",
    ]
    events = (
        await db_session.scalars(select(AuditEvent).where(AuditEvent.entity_id == job["id"]))
    ).all()
    assert all(event.category == "export" for event in events)
    assert {(e.after or {})["sha256"] for e in events if e.action == "export.downloaded"} == {
        job["sha256"]
    }


async def test_scores_wide_csv_and_json_lines_keep_exact_values(
    client: httpx.AsyncClient, world: World, runner: Runner
) -> None:
    body = {"study_id": world.study_id, "format": "csv", "dataset": "summaries"}
    _, archive = await export_archive(client, runner, world.researcher.headers, body)
    rows = read_csv(archive, "scores.csv")
    assert sorted(row["participant_code"] for row in rows) == ["A1", "B1"]
    columns = list(rows[0].keys())
    assert "simple-rt.median_rt" in columns and "flanker.accuracy" in columns
    assert "simple-rt.flags" in columns and "simple-rt.scorer_version" in columns
    a1 = next(row for row in rows if row["participant_code"] == "A1")
    assert a1["simple-rt.n_trials"] == "10"
    codebook = {entry["name"]: entry for entry in read_csv(archive, "codebook.csv")}
    assert set(codebook) == set(columns)
    median = codebook["simple-rt.median_rt"]
    assert (median["type"], median["unit"]) == ("number", "ms")
    assert median["scorer_version"] == a1["simple-rt.scorer_version"] != ""

    body = {"study_id": world.study_id, "format": "json", "dataset": "all"}
    job, archive = await export_archive(client, runner, world.researcher.headers, body)
    assert {"trials.jsonl", "sessions.jsonl", "participants.jsonl"} <= set(archive.namelist())
    trials = read_jsonl(archive, "trials.jsonl")
    assert {
        t["response"] for t in trials if t["trial_index"] == 0 and t["task"] == "simple-rt"
    } == {"=1+2"}
    assert all(isinstance(t["rt"], float) for t in trials)
    sessions = read_jsonl(archive, "sessions.jsonl")
    assert len(sessions) == 2
    a1_session = next(s for s in sessions if s["participant_code"] == "A1")
    assert {task["task"] for task in a1_session["tasks"]} == {"simple-rt", "flanker"}
    simple = next(task for task in a1_session["tasks"] if task["task"] == "simple-rt")
    assert simple["scores"]["n_trials"] == 10 and isinstance(simple["flags"], list)
    participants = read_jsonl(archive, "participants.jsonl")
    assert {p["participant_code"] for p in participants} == {"A1", "B1"}
    assert {p["site_name"] for p in participants} >= {FORMULA_SITE}  # exact in JSON
    assert "email" not in participants[0]
    assert job["progress"]["rows_total"] == 44 + 2 + 2


async def test_filters_narrow_the_rows(
    client: httpx.AsyncClient, world: World, runner: Runner
) -> None:
    study = world.study_id
    by_site = {
        "study_id": study,
        "format": "csv",
        "dataset": "trials",
        "filters": {"site_ids": [str(world.site_ids["S2"])], "tasks": ["flanker"]},
    }
    _, archive = await export_archive(client, runner, world.researcher.headers, by_site)
    rows = read_csv(archive, "trials.csv")
    assert len(rows) == 12
    assert {(r["participant_code"], r["task"]) for r in rows} == {("B1", "flanker")}

    by_person = {
        "study_id": study,
        "format": "csv",
        "dataset": "trials",
        "filters": {"participant_ids": [str(world.participant_ids["A1"])]},
    }
    _, archive = await export_archive(client, runner, world.researcher.headers, by_person)
    assert {r["participant_code"] for r in read_csv(archive, "trials.csv")} == {"A1"}

    later = {
        "study_id": study,
        "format": "csv",
        "dataset": "trials",
        "filters": {"started_from": (utcnow() + timedelta(hours=1)).isoformat()},
    }
    job, archive = await export_archive(client, runner, world.researcher.headers, later)
    assert read_csv(archive, "trials.csv") == []
    assert job["progress"]["percent"] == 100.0

    outside = {**by_site, "filters": {"site_ids": [str(world.site_ids["S2"]), str(study)]}}
    refused = await create(client, world.researcher.headers, outside)
    assert refused.status_code == 422, refused.text


async def test_the_visit_filter_keeps_the_sessions_of_those_visits_in_every_format(
    client: httpx.AsyncClient, world: World, runner: Runner, db_session: AsyncSession
) -> None:
    """A1's session at visit `week-4`, B1's at `baseline`; a filter on `week-4` keeps A1's
    rows only, in the trials, the scores and the sessions (unscheduled sessions are left out
    by any visit filter)."""
    await attach_visit(db_session, world, world.session_ids["A1"], "week-4")
    await attach_visit(db_session, world, world.session_ids["B1"], "baseline")
    week4 = {"visit_keys": ["week-4"]}
    body = {"study_id": world.study_id, "format": "csv", "dataset": "all", "filters": week4}
    _, archive = await export_archive(client, runner, world.researcher.headers, body)
    trials = read_csv(archive, "trials.csv")
    assert len(trials) == 22
    assert {(r["participant_code"], r["visit_key"]) for r in trials} == {("A1", "week-4")}
    assert [r["participant_code"] for r in read_csv(archive, "scores.csv")] == ["A1"]

    body = {**body, "format": "json"}
    _, archive = await export_archive(client, runner, world.researcher.headers, body)
    assert {t["visit_key"] for t in read_jsonl(archive, "trials.jsonl")} == {"week-4"}
    sessions = read_jsonl(archive, "sessions.jsonl")
    assert [(s["participant_code"], s["visit_occurrence"]) for s in sessions] == [("A1", 1)]

    body = {**body, "format": "parquet", "dataset": "trials"}
    body["filters"] = {"visit_keys": ["baseline", "week-4"]}
    _, archive = await export_archive(client, runner, world.researcher.headers, body)
    table = pq.read_table(io.BytesIO(archive.read("trials.parquet")))
    assert sorted(set(table.column("visit_key").to_pylist())) == ["baseline", "week-4"]
    assert table.num_rows == 44

    body["filters"] = {"visit_keys": ["no-such-visit"]}
    _, archive = await export_archive(client, runner, world.researcher.headers, body)
    assert pq.read_table(io.BytesIO(archive.read("trials.parquet"))).num_rows == 0


async def test_contact_details_only_when_asked_and_allowed(
    client: httpx.AsyncClient, world: World, runner: Runner
) -> None:
    body = {
        "study_id": world.study_id,
        "format": "csv",
        "dataset": "participants",
        "include_pii": True,
    }
    job, archive = await export_archive(client, runner, world.researcher.headers, body)
    assert job["include_pii"] is True
    rows = read_csv(archive, "participants.csv")
    a1 = next(row for row in rows if row["participant_code"] == "A1")
    assert a1["email"] == "'" + FORMULA_EMAIL  # neutralised in CSV
    assert a1["site_name"] == "'" + FORMULA_SITE
    codebook = {entry["name"]: entry for entry in read_csv(archive, "codebook.csv")}
    assert codebook["email"]["meaning"].startswith("CONTACT DETAIL")
    assert '"contains_contact_details": true' in archive.read("export.json").decode()

    body["format"] = "json"
    _, archive = await export_archive(client, runner, world.researcher.headers, body)
    a1_json = next(
        p for p in read_jsonl(archive, "participants.jsonl") if p["participant_code"] == "A1"
    )
    assert a1_json["email"] == FORMULA_EMAIL and a1_json["phone"] == "+15550001"

    without = {**body, "include_pii": False}
    _, archive = await export_archive(client, runner, world.researcher.headers, without)
    assert "email" not in read_jsonl(archive, "participants.jsonl")[0]


async def test_access_follows_the_export_capability(
    client: httpx.AsyncClient, world: World, runner: Runner
) -> None:
    body = {"study_id": world.study_id, "format": "csv", "dataset": "trials"}
    for person in (world.coordinator, world.viewer):
        refused = await create(client, person.headers, body)
        assert refused.status_code == 403, refused.text
    assert (await create(client, world.outsider.headers, body)).status_code == 404

    job, _ = await export_archive(client, runner, world.researcher.headers, body)
    path = f"/api/exports/{job['id']}"
    assert (await client.get(path, headers=world.coordinator.headers)).status_code == 403
    assert (await client.get(f"{path}/download", headers=world.viewer.headers)).status_code == 403
    assert (await client.get(path, headers=world.outsider.headers)).status_code == 404
    # A researcher scoped to site S2 neither sees the study-wide job nor gets other sites' rows.
    assert (await client.get(path, headers=world.site_researcher.headers)).status_code == 404
    scoped, archive = await export_archive(client, runner, world.site_researcher.headers, body)
    assert scoped["site_id"] == str(world.site_ids["S2"])
    assert {r["site_code"] for r in read_csv(archive, "trials.csv")} == {"S2"}
    listed = await client.get(
        "/api/exports",
        params={"study_id": world.study_id},
        headers=world.site_researcher.headers,
    )
    assert [j["id"] for j in listed.json()] == [scoped["id"]]


async def test_delete_and_expiry_remove_the_file(
    client: httpx.AsyncClient, world: World, runner: Runner, db_session: AsyncSession
) -> None:
    body = {"study_id": world.study_id, "format": "csv", "dataset": "trials"}
    queued = await create(client, world.researcher.headers, body)
    path = f"/api/exports/{queued.json()['id']}"
    early = await client.get(f"{path}/download", headers=world.researcher.headers)
    assert early.status_code == 409, early.text
    assert (await client.delete(path, headers=world.researcher.headers)).status_code == 409
    await runner.run()
    deleted = await client.delete(path, headers=world.researcher.headers)
    assert deleted.status_code == 200 and deleted.json()["status"] == "deleted"
    gone = await client.get(f"{path}/download", headers=world.researcher.headers)
    assert gone.status_code == 410, gone.text

    job, _ = await export_archive(client, runner, world.researcher.headers, body)
    row = await db_session.get(ExportJob, uuid.UUID(job["id"]))
    assert row is not None and row.file_path is not None
    stored = runner.settings.STORAGE_DIR / "exports" / row.file_path
    assert stored.is_file()
    assert await sweep_expired_exports(db_session, runner.settings, utcnow()) == 0
    removed = await sweep_expired_exports(
        db_session,
        runner.settings,
        utcnow() + timedelta(hours=runner.settings.EXPORT_EXPIRY_HOURS + 1),
    )
    assert removed == 1 and not stored.exists()
    after = await client.get(f"/api/exports/{job['id']}", headers=world.researcher.headers)
    assert after.json()["status"] == "expired"
    assert await _audit_actions(db_session, job["id"]) == [
        "export.created",
        "export.ready",
        "export.downloaded",
        "export.expired",
    ]


async def test_parquet_tables_are_typed_and_exact(
    client: httpx.AsyncClient, world: World, runner: Runner
) -> None:
    body = {"study_id": world.study_id, "format": "parquet", "dataset": "all"}
    _, archive = await export_archive(client, runner, world.researcher.headers, body)
    assert {"trials.parquet", "scores.parquet", "participants.parquet"} <= set(archive.namelist())
    trials = pq.read_table(io.BytesIO(archive.read("trials.parquet")))
    assert trials.num_rows == 44
    assert trials.schema.field("rt").type == pa.float64()
    assert trials.schema.field("is_practice").type == pa.bool_()
    assert trials.schema.field("trial_index").type == pa.int64()
    assert trials.schema.field("rt").metadata[b"unit"] == b"ms"
    rows = trials.to_pylist()
    first = next(
        r
        for r in rows
        if r["participant_code"] == "A1" and r["task"] == "simple-rt" and r["trial_index"] == 0
    )
    assert first["response"] == "=1+2" and first["rt"] == 300.0  # exact, not neutralised
    scores = pq.read_table(io.BytesIO(archive.read("scores.parquet")))
    assert scores.num_rows == 2
    assert scores.schema.field("simple-rt.n_trials").type == pa.float64()
    a1 = next(r for r in scores.to_pylist() if r["participant_code"] == "A1")
    assert a1["simple-rt.n_trials"] == 10
    assert a1["started_at"].tzinfo is not None
    codebook = read_csv(archive, "codebook.csv")
    assert {e["table"] for e in codebook} == {"trials", "scores", "participants"}
