"""The `metricis` command on a fresh SQLite database."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.config import get_settings
from app.main import create_app
from app.services.demo.seed import DEMO_PASSWORD
from tests.conftest import lifespan_client


@pytest.fixture
def cli_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("STORAGE_DIR", str(tmp_path / "storage"))
    monkeypatch.setenv("PASSWORD_HASH_TIME_COST", "1")
    monkeypatch.setenv("PASSWORD_HASH_MEMORY_KIB", "1024")
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_upgrade_demo_and_create_admin(cli_database: str) -> None:
    runner = CliRunner()
    upgraded = runner.invoke(cli, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    first = runner.invoke(cli, ["demo"])
    assert first.exit_code == 0, first.output
    assert "Demo data created." in first.output
    assert DEMO_PASSWORD in first.output and "admin@metricis.local" in first.output
    assert "POST /api/consent/sign" in first.output
    second = runner.invoke(cli, ["demo"])
    assert second.exit_code == 0 and "already present" in second.output
    assert printed_sign_in(second.output) != printed_sign_in(first.output)

    weak = runner.invoke(
        cli, ["create-admin", "--email", "ops@example.org", "--name", "Ops", "--password", "short"]
    )
    assert weak.exit_code == 1
    assert "at least 12 characters" in weak.output
    created = runner.invoke(
        cli,
        ["create-admin", "--email", "ops@example.org", "--name", "Ops"],
        input="Correct-Horse-Battery-42\nCorrect-Horse-Battery-42\n",
    )
    assert created.exit_code == 0, created.output
    duplicate = runner.invoke(
        cli,
        [
            "create-admin",
            "--email",
            "OPS@example.org",
            "--name",
            "Ops",
            "--password",
            "Correct-Horse-Battery-42",
        ],
    )
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output

    rescored = runner.invoke(cli, ["rescore", "--study", "demo-2026-001"])
    assert rescored.exit_code == 0, rescored.output
    assert "Rescored 3 tasks in 1 sessions" in rescored.output
    unknown = runner.invoke(cli, ["rescore", "--study", "NOPE-1"])
    assert unknown.exit_code == 1 and "No study" in unknown.output


def printed_sign_in(output: str) -> dict[str, str]:
    """The participant sign-in body `metricis demo` prints after POST .../api/auth/participant."""
    found = re.search(r"/api/auth/participant (\{.*\})", output)
    assert found is not None, output
    body: dict[str, str] = json.loads(found.group(1))
    return body


async def test_every_demo_run_prints_an_access_code_that_signs_in(cli_database: str) -> None:
    runner = CliRunner()
    # The commands run their own event loop: off this test's loop, in a thread.
    assert (await asyncio.to_thread(runner.invoke, cli, ["db", "upgrade"])).exit_code == 0
    runs = [await asyncio.to_thread(runner.invoke, cli, ["demo"]) for _ in range(2)]
    assert all(run.exit_code == 0 for run in runs), [run.output for run in runs]
    first, second = (printed_sign_in(run.output) for run in runs)
    assert first["study_code"] == second["study_code"] == "DEMO-2026-001"

    async with lifespan_client(create_app(get_settings())) as client:
        signed_in = await client.post("/api/auth/participant", json=second)
        assert signed_in.status_code == 200, signed_in.text
        token = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
        manifest = await client.get("/api/sync/manifest", headers=token)
        assert manifest.status_code == 200, manifest.text
        assert len(manifest.json()["batteries"]) == 1
        assert manifest.json()["consent"]["current_form"] is not None
        replaced = await client.post("/api/auth/participant", json=first)
        assert replaced.status_code == 401


def test_audit_verify_and_checkpoint_commands(
    cli_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(cli, ["demo"]).exit_code == 0

    verified = runner.invoke(cli, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
    found = re.search(r"The audit chain is valid: (\d+) events and 0 gaps", verified.output)
    assert found is not None and int(found.group(1)) > 5, verified.output

    published = runner.invoke(cli, ["audit", "checkpoint"])
    assert published.exit_code == 0, published.output
    assert "Checkpoint at sequence" in published.output
    [checkpoints] = (tmp_path / "storage" / "audit-checkpoints").glob("checkpoints-*.jsonl")
    assert json.loads(checkpoints.read_text().splitlines()[-1])["key_id"] == "dev"

    as_json = runner.invoke(cli, ["audit", "verify", "--json"])
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.output)
    assert report["valid"] is True
    # The first chainer run published one (none was ever published), the command another.
    assert report["checkpoints_checked"] == 2
    assert report["events_checked"] == int(found.group(1))

    # Another key than the one that signed: the report says where, and the command fails.
    monkeypatch.setenv("AUDIT_CHAIN_KEYS", "k9:" + "QUFB" * 11)
    get_settings.cache_clear()
    other_key = runner.invoke(cli, ["audit", "verify"])
    assert other_key.exit_code == 1
    assert "BROKEN at sequence 1" in other_key.output
    assert "'dev', which is not configured" in other_key.output


def test_migrations_run_as_the_migration_role(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`db upgrade` uses MIGRATION_DATABASE_URL when it is set, not DATABASE_URL."""
    owner_database = tmp_path / "owner.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'runtime.db'}")
    monkeypatch.setenv("MIGRATION_DATABASE_URL", f"sqlite+aiosqlite:///{owner_database}")
    get_settings.cache_clear()
    try:
        assert CliRunner().invoke(cli, ["db", "upgrade"]).exit_code == 0
    finally:
        get_settings.cache_clear()
    assert owner_database.exists()
    assert not (tmp_path / "runtime.db").exists()


def test_demo_refused_in_production(cli_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    get_settings.cache_clear()
    result = CliRunner().invoke(cli, ["demo"])
    assert result.exit_code == 1
    assert "refused" in result.output


@pytest.mark.parametrize(
    ("database_url", "expected"),
    [
        (
            "postgresql+asyncpg://postgres@127.0.0.1:5432/metricis_missing_database_for_cli_test",
            'The database "metricis_missing_database_for_cli_test" does not exist',
        ),
        ("postgresql+asyncpg://postgres@127.0.0.1:9/metricis", "Cannot reach PostgreSQL"),
        ("sqlite+aiosqlite:////nonexistent-folder/metricis.db", "Cannot open the SQLite database"),
    ],
)
def test_a_missing_database_is_one_line_saying_what_to_do(database_url: str, expected: str) -> None:
    if "does not exist" in expected:
        try:
            socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        except OSError:
            pytest.skip("needs a PostgreSQL server to ask for the missing database")
    result = subprocess.run(
        [sys.executable, "-c", "from app.cli import main; main()", "db", "upgrade"],
        env={**os.environ, "DATABASE_URL": database_url, "ENVIRONMENT": "development"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_storage_sweep_lists_then_removes_an_orphaned_source_document(
    cli_database: str, tmp_path: Path
) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(cli, ["demo"]).exit_code == 0
    documents = sorted((tmp_path / "storage" / "sources").rglob("*.json"))
    assert documents, "the demo stores source documents"
    orphan = documents[0].with_name("simple-rt.0123456789abcdef0123456789abcdef.json")
    orphan.write_bytes(b"{}")
    two_days_ago = time.time() - 2 * 86400
    for path in (orphan, *documents):
        os.utime(path, (two_days_ago, two_days_ago))
    relative = orphan.relative_to(tmp_path / "storage").as_posix()

    listed = runner.invoke(cli, ["storage", "sweep"])
    assert listed.exit_code == 0, listed.output
    assert relative in listed.output and "Found 1 orphaned source documents" in listed.output
    assert orphan.exists()

    removed = runner.invoke(cli, ["storage", "sweep", "--remove"])
    assert removed.exit_code == 0, removed.output
    assert "Removed 1 orphaned source documents" in removed.output
    assert not orphan.exists() and all(path.exists() for path in documents)
    too_short = runner.invoke(cli, ["storage", "sweep", "--grace-hours", "0.1"])
    assert too_short.exit_code != 0
