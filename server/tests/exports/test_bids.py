"""The BIDS behavioural export through the HTTP API: names, required files, sidecars, labels,
exact values and the filters (docs/exports.md, BIDS)."""

from __future__ import annotations

import json
import re
import zipfile
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import utcnow
from app.services.exports.bids import assign_labels, seconds, tsv_cell
from tests import factories
from tests.exports.conftest import (
    Runner,
    World,
    attach_visit,
    create,
    export_archive,
    session_of,
)

LABEL = r"[A-Za-z0-9]+"
BEH = re.compile(
    rf"^sub-(?P<sub>{LABEL})/ses-(?P<ses>{LABEL})/beh/"
    rf"sub-(?P=sub)_ses-(?P=ses)_task-(?P<task>{LABEL})(?:_run-(?P<run>[0-9]+))?_beh\.(tsv|json)$"
)
SESSIONS = re.compile(rf"^sub-(?P<sub>{LABEL})/sub-(?P=sub)_sessions\.(tsv|json)$")
TOP_LEVEL = {
    "dataset_description.json",
    "README.md",
    "participants.tsv",
    "participants.json",
    ".bidsignore",
    "codebook.csv",
    "codebook.json",
    "export.json",
}


def read_tsv(archive: zipfile.ZipFile, name: str) -> list[dict[str, str]]:
    """Rows of a TSV, checking that every line has the header's number of cells and that no
    cell is empty (BIDS: missing values are n/a)."""
    lines = archive.read(name).decode("utf-8").split("\n")
    assert lines[-1] == "", name  # ends with a newline
    header = lines[0].split("\t")
    rows = []
    for line in lines[1:-1]:
        cells = line.split("\t")
        assert len(cells) == len(header), (name, line)
        assert "" not in cells, (name, line)
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def beh_files(archive: zipfile.ZipFile) -> dict[str, re.Match[str]]:
    return {
        name: match
        for name in archive.namelist()
        if name.endswith("_beh.tsv") and (match := BEH.match(name))
    }


async def _bids(
    client: httpx.AsyncClient, runner: Runner, world: World, **extra: Any
) -> tuple[dict[str, Any], zipfile.ZipFile]:
    body = {"study_id": world.study_id, "format": "bids", **extra}
    return await export_archive(client, runner, world.researcher.headers, body)


@pytest.fixture
async def visits(
    client: httpx.AsyncClient, world: World, db_session: AsyncSession
) -> dict[str, str]:
    """A1's session at visit `week-4`, and a second one there (simple-rt only); `A-1`, a code
    whose label collides with A1's, at `baseline`; B1's session unscheduled. The sessions'
    ids by name."""
    await attach_visit(db_session, world, world.session_ids["A1"], "week-4")
    second = await session_of(
        client, world, world.participant_ids["A1"], {"trials": factories.simple_rt_trials(5)}
    )
    await attach_visit(db_session, world, second, "week-4")
    site = world.site_ids["S1"]
    clash = await factories.participant(db_session, world.study, "A-1", site)
    clash_session = await session_of(
        client, world, clash.id, {"trials": factories.simple_rt_trials(3)}
    )
    await attach_visit(db_session, world, clash_session, "baseline")
    return {"A1": world.session_ids["A1"], "A1-second": second, "A-1": clash_session}


async def test_bids_export_is_a_bids_dataset_with_exact_values(
    client: httpx.AsyncClient, world: World, runner: Runner, visits: dict[str, str]
) -> None:
    job, archive = await _bids(client, runner, world)
    names = set(archive.namelist())
    # Every file is a BIDS name (or listed in .bidsignore).
    for name in names - TOP_LEVEL:
        assert BEH.match(name) or SESSIONS.match(name), name
    assert names >= TOP_LEVEL
    assert archive.read(".bidsignore").decode().split() == [
        "codebook.csv",
        "codebook.json",
        "export.json",
    ]
    description = json.loads(archive.read("dataset_description.json"))
    assert description["Name"] and description["BIDSVersion"] == "1.10.0"
    assert description["DatasetType"] == "raw"
    generated = description["GeneratedBy"][0]
    assert generated["Name"] == "Metricis" and generated["Version"]
    assert "simple-rt" in generated["Description"]

    # Labels: A1 and A-1 both strip to A1, so both fall back, in the order of their codes.
    files = beh_files(archive)
    assert {(m["sub"], m["ses"], m["task"], m["run"]) for m in files.values()} == {
        ("A1x2", "week4", "simplert", "1"),
        ("A1x2", "week4", "simplert", "2"),
        ("A1x2", "week4", "flanker", None),
        ("A1x1", "baseline", "simplert", None),
        ("B1", "unscheduled", "simplert", None),
        ("B1", "unscheduled", "flanker", None),
    }
    participants = read_tsv(archive, "participants.tsv")
    assert archive.read("participants.tsv").decode().split("\t")[0] == "participant_id"
    assert [(p["participant_id"], p["participant_code"], p["site"]) for p in participants] == [
        ("sub-A1x1", "A-1", "S1"),
        ("sub-A1x2", "A1", "S1"),
        ("sub-B1", "B1", "S2"),
    ]
    assert {p["participant_id"] for p in participants} == {
        f"sub-{m['sub']}" for m in files.values()
    }
    labels = Counter(p["participant_id"].lower() for p in participants)
    assert max(labels.values()) == 1
    text = archive.read("participants.tsv").decode()
    assert "example.org" not in text and "email" not in text and "phone" not in text
    sessions = read_tsv(archive, "sub-A1x2/sub-A1x2_sessions.tsv")
    assert [(s["session_id"], s["visit_key"], s["visit_occurrence"]) for s in sessions] == [
        ("ses-week4", "week-4", "1")
    ]
    assert sessions[0]["assessment_sessions"] == f"{visits['A1']};{visits['A1-second']}"
    sessions_sidecar = json.loads(archive.read("sub-A1x2/sub-A1x2_sessions.json"))
    assert "Units" not in sessions_sidecar["acq_time"]  # BIDS would read it as a number
    unscheduled = read_tsv(archive, "sub-B1/sub-B1_sessions.tsv")
    assert [(s["session_id"], s["visit_key"]) for s in unscheduled] == [("ses-unscheduled", "n/a")]

    # Each TSV has a sidecar describing every column.
    tables = [n for n in names if n.endswith(".tsv")]
    for name in tables:
        sidecar_name = name.removesuffix(".tsv") + ".json"
        if SESSIONS.match(name) is None and BEH.match(name) is None:
            assert name == "participants.tsv"
        sidecar = json.loads(archive.read(sidecar_name))
        header = archive.read(name).decode().split("\n")[0].split("\t")
        for column in header:
            assert sidecar[column]["Description"], (name, column)
            assert sidecar[column]["LongName"], (name, column)
    total = 0
    for name, match in files.items():
        sidecar = json.loads(archive.read(name.removesuffix(".tsv") + ".json"))
        assert sidecar["TaskLabel"] == match["task"]
        assert sidecar["TaskName"] in ("simple-rt", "flanker")
        assert sidecar["rt"]["Units"] == "ms" and sidecar["response_time"]["Units"] == "s"
        assert set(sidecar["correct"]["Levels"]) == {"true", "false"}
        total += len(read_tsv(archive, name))
    assert total == 10 + 5 + 12 + 3 + 10 + 12
    assert job["progress"]["rows_total"] == total

    a1 = read_tsv(archive, "sub-A1x2/ses-week4/beh/sub-A1x2_ses-week4_task-simplert_run-1_beh.tsv")
    assert (
        json.loads(
            archive.read("sub-A1x2/ses-week4/beh/sub-A1x2_ses-week4_task-simplert_run-1_beh.json")
        )["AssessmentSessionId"]
        == visits["A1"]
    )
    assert [r["trial_index"] for r in a1] == [str(i) for i in range(10)]
    first = a1[0]
    assert first["response"] == "=1+2"  # exact: no spreadsheet neutralisation
    assert a1[1]["response"] == "-SUM(A1)"
    assert (first["rt"], first["response_time"]) == ("300.0", "0.3000")
    assert first["is_practice"] == "false"
    assert first["condition"] == "n/a"  # simple-RT trials have no condition
    codebook = json.loads(archive.read("codebook.json"))
    assert {entry["table"] for entry in codebook} == {"beh", "participants", "sessions"}


async def test_bids_respects_the_filters(
    client: httpx.AsyncClient, world: World, runner: Runner, visits: dict[str, str]
) -> None:
    def subjects_and_tasks(archive: zipfile.ZipFile) -> set[tuple[str, str, str]]:
        return {(m["sub"], m["ses"], m["task"]) for m in beh_files(archive).values()}

    _, archive = await _bids(client, runner, world, filters={"visit_keys": ["week-4"]})
    assert subjects_and_tasks(archive) == {
        ("A1x2", "week4", "simplert"),
        ("A1x2", "week4", "flanker"),
    }
    assert [p["participant_id"] for p in read_tsv(archive, "participants.tsv")] == ["sub-A1x2"]

    _, archive = await _bids(
        client,
        runner,
        world,
        dataset="trials",
        filters={"site_ids": [str(world.site_ids["S2"])], "tasks": ["flanker"]},
    )
    assert subjects_and_tasks(archive) == {("B1", "unscheduled", "flanker")}

    _, archive = await _bids(
        client, runner, world, filters={"participant_ids": [str(world.participant_ids["B1"])]}
    )
    assert {s for s, _, _ in subjects_and_tasks(archive)} == {"B1"}

    later = (utcnow() + timedelta(hours=1)).isoformat()
    _, archive = await _bids(client, runner, world, filters={"started_from": later})
    assert beh_files(archive) == {}
    assert read_tsv(archive, "participants.tsv") == []
    earlier = (utcnow() - timedelta(hours=1)).isoformat()
    _, archive = await _bids(client, runner, world, filters={"started_to": earlier})
    assert beh_files(archive) == {}
    _, archive = await _bids(
        client, runner, world, filters={"started_from": earlier, "started_to": later}
    )
    assert len(beh_files(archive)) == 6

    # A site-scoped researcher gets their own site only; W1 (withdrawn with deletion) never.
    _, archive = await export_archive(
        client,
        runner,
        world.site_researcher.headers,
        {"study_id": world.study_id, "format": "bids"},
    )
    assert {s for s, _, _ in subjects_and_tasks(archive)} == {"B1"}
    _, archive = await _bids(client, runner, world)
    assert "W1" not in archive.read("participants.tsv").decode()


async def test_bids_holds_trials_only_and_never_contact_details(
    client: httpx.AsyncClient, world: World
) -> None:
    for dataset in ("summaries", "sessions", "participants"):
        body = {"study_id": world.study_id, "format": "bids", "dataset": dataset}
        refused = await create(client, world.researcher.headers, body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "VALIDATION_ERROR"
    with_pii: dict[str, Any] = {"study_id": world.study_id, "format": "bids", "include_pii": True}
    assert (await create(client, world.researcher.headers, with_pii)).status_code == 422
    trials = {"study_id": world.study_id, "format": "bids", "dataset": "trials"}
    assert (await create(client, world.coordinator.headers, trials)).status_code == 403


def test_labels_fall_back_when_empty_shared_or_reserved() -> None:
    labels = assign_labels(
        [
            ("a", "AB"),  # shares its label with b, ignoring case
            ("b", "ab"),
            ("c", ""),
            ("d", "ABx1"),  # a natural label the fallback must step over
            ("e", "unscheduled"),
            ("f", "C7"),
        ],
        empty_stem="p",
        reserved=frozenset({"Unscheduled"}),
    )
    assert labels == {
        "a": "ABx2",
        "b": "abx3",
        "c": "px1",
        "d": "ABx1",
        "e": "unscheduledx1",
        "f": "C7",
    }
    assert len({label.lower() for label in labels.values()}) == len(labels)


def test_cells_are_exact_and_tab_safe() -> None:
    assert tsv_cell(None) == "n/a" and tsv_cell("") == "n/a"
    assert tsv_cell("a\tb\nc\rd") == "a\\tb\\nc\\rd"
    assert tsv_cell("=1+2") == "=1+2"
    assert tsv_cell(True) == "true" and tsv_cell(0.1) == "0.1" and tsv_cell(-12) == "-12"
    assert tsv_cell({"b": 1, "a": "x\ty"}) == '{"a":"x\\ty","b":1}'  # JSON escapes
    assert seconds(312.5) == "0.3125" and seconds(None) is None
    assert seconds(0.1) == "0.0001"
