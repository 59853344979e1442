"""The runtime role on PostgreSQL: `metricis db create-runtime-role` makes a role that owns
nothing and may only read and append to the audit tables; connected as that role, the trail
cannot be changed nor its triggers lifted, and the application works.

Roles belong to the whole PostgreSQL cluster: each test names its own and drops it (with its
privileges) before its database is dropped.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings, get_settings
from app.db.runtime_role import RuntimeRoleError, apply_runtime_role
from app.db.session import create_engine, create_sessionmaker
from app.main import create_app
from app.models.audit import AuditCategory
from app.models.user import UserRole
from app.services.audit import AuditContext, ChainSettings, record_event, verify_chain
from app.services.audit.chain import chain_pending_events
from tests import factories
from tests.assessments.conftest import committed_participant
from tests.audit.helpers import stored_links
from tests.conftest import lifespan_client


def _role_name() -> str:
    return f"metricis_rt_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def _as_role(settings: Settings, role: str) -> Settings:
    url = make_url(settings.DATABASE_URL).set(username=role, password=None)
    return settings.model_copy(update={"DATABASE_URL": url.render_as_string(hide_password=False)})


async def _drop_role(owner: AsyncEngine, role: str) -> None:
    async with owner.begin() as connection:
        exists = await connection.scalar(
            text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}
        )
        if exists:
            await connection.execute(text(f'DROP OWNED BY "{role}"'))
            await connection.execute(text(f'DROP ROLE "{role}"'))


@pytest.fixture
def postgres_only(is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip("database roles exist on PostgreSQL only")


@pytest.fixture
async def owner(postgres_only: None, isolated_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(isolated_settings)
    yield engine
    await engine.dispose()


@pytest.fixture
async def runtime(
    owner: AsyncEngine, isolated_settings: Settings, tmp_path: Path
) -> AsyncIterator[Settings]:
    """Settings of the application connected as a fresh runtime role."""
    role = _role_name()
    async with owner.begin() as connection:
        report = await apply_runtime_role(connection, role)
    assert report.created
    settings = _as_role(isolated_settings, role).model_copy(
        update={"AUDIT_CHECKPOINT_DIR": tmp_path / "checkpoints"}
    )
    try:
        yield settings
    finally:
        await _drop_role(owner, role)


@pytest.fixture
async def runtime_engine(runtime: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(runtime)
    yield engine
    await engine.dispose()


REFUSED = {
    "update-event": "UPDATE audit_events SET reason = 'rewritten'",
    "delete-event": "DELETE FROM audit_events",
    "truncate-events": "TRUNCATE audit_events",
    "update-link": "UPDATE audit_chain_links SET mac = prev_mac",
    "delete-link": "DELETE FROM audit_chain_links",
    "truncate-links": "TRUNCATE audit_chain_links",
    "delete-state": "DELETE FROM audit_chain_state",
    "insert-state": (
        "INSERT INTO audit_chain_state (id, chain_id, last_sequence, last_mac, updated_at, "
        "last_checkpoint_sequence) VALUES (2, gen_random_uuid(), 0, '', now(), 0)"
    ),
    "disable-event-triggers": "ALTER TABLE audit_events DISABLE TRIGGER ALL",
    "disable-one-trigger": (
        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete"
    ),
    "disable-link-triggers": "ALTER TABLE audit_chain_links DISABLE TRIGGER ALL",
    "drop-trigger": "DROP TRIGGER audit_events_no_update_delete ON audit_events",
    "replace-trigger-function": (
        "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$"
    ),
    "replica-mode": "SET session_replication_role = replica",
    "create-table": "CREATE TABLE shadow_events (id int)",
    "migrations": "UPDATE alembic_version SET version_num = '0005'",
    "reset-sequence": "SELECT setval('audit_events_sequence_seq', 1)",
}


async def test_the_runtime_role_cannot_change_the_trail_or_lift_its_protection(
    runtime_engine: AsyncEngine,
) -> None:
    """Every statement is refused by PostgreSQL's privileges, before any trigger runs. One
    database for all of them: building one per statement would take a minute."""
    async with AsyncSession(runtime_engine) as session, session.begin():
        await record_event(
            session, AuditContext.system(), action="test.event", category=AuditCategory.DATA
        )
    allowed = []
    for name, statement in REFUSED.items():
        try:
            async with runtime_engine.begin() as connection:
                await connection.execute(text(statement))
        except DBAPIError as exc:
            assert re.search(r"permission denied|must be owner", str(exc.orig)), (name, exc)
        else:
            allowed.append(name)
    assert allowed == []


async def test_the_runtime_role_owns_nothing_and_holds_exactly_its_grants(
    owner: AsyncEngine, runtime: Settings
) -> None:
    role = str(make_url(runtime.DATABASE_URL).username)
    async with owner.connect() as connection:
        owned = await connection.scalar(
            text(
                "SELECT (SELECT count(*) FROM pg_class WHERE relowner = r.oid)"
                " + (SELECT count(*) FROM pg_proc WHERE proowner = r.oid)"
                " FROM pg_roles r WHERE rolname = :role"
            ),
            {"role": role},
        )
        attributes = (
            await connection.execute(
                text(
                    "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls "
                    "FROM pg_roles WHERE rolname = :role"
                ),
                {"role": role},
            )
        ).one()
        grants = {
            (str(table), str(privilege))
            for table, privilege in (
                await connection.execute(
                    text(
                        "SELECT table_name, privilege_type "
                        "FROM information_schema.role_table_grants WHERE grantee = :role"
                    ),
                    {"role": role},
                )
            ).all()
        }
    assert owned == 0
    assert tuple(attributes) == (False, False, False, False)
    assert {p for t, p in grants if t == "audit_events"} == {"SELECT", "INSERT"}
    assert {p for t, p in grants if t == "audit_chain_links"} == {"SELECT", "INSERT"}
    assert {p for t, p in grants if t == "audit_chain_state"} == {"SELECT", "UPDATE"}
    assert {p for t, p in grants if t == "participants"} == {"SELECT", "INSERT", "UPDATE", "DELETE"}
    assert not {p for t, p in grants if t == "alembic_version"}
    assert not {p for _, p in grants} & {"TRUNCATE", "TRIGGER", "REFERENCES"}


async def test_the_application_works_under_the_runtime_role(
    runtime: Settings, runtime_engine: AsyncEngine
) -> None:
    """Sign-in, a submission (COPY of its trials), the chainer and verification, all as the
    runtime role."""
    app = create_app(runtime)
    async with lifespan_client(app) as client:
        sessions = create_sessionmaker(runtime_engine)
        async with sessions() as db:
            who = await committed_participant(db, runtime, ["simple-rt"])
            admin = await factories.staff(db, client, UserRole.ADMIN)
        started = await factories.start_session(
            client, who.headers, who.participant_id, who.battery_id
        )
        assert started.status_code == 201, started.text
        session_id = started.json()["session_id"]
        submitted = await factories.submit(
            client, who.headers, session_id, {"trials": factories.simple_rt_trials(20)}
        )
        assert submitted.status_code == 201, submitted.text

        verified = await client.get("/api/audit/verify", headers=admin.headers)
        assert verified.status_code == 200, verified.text
        report = verified.json()
        assert report["valid"] is True, report
        assert report["events_checked"] >= 4  # user created, sign-in, session start, submission
        listing = await client.get(
            "/api/audit", headers=admin.headers, params={"action": "submission.accepted"}
        )
        assert listing.status_code == 200, listing.text
        [accepted] = listing.json()["data"]
        assert accepted["entity_id"] == session_id
        assert accepted["hash"] is not None and accepted["key_id"] == "dev"

    # The periodic chainer and a checkpoint, as the runtime role too.
    chain = ChainSettings.from_settings(runtime)
    async with sessions() as db, db.begin():
        await record_event(
            db, AuditContext.system(), action="test.after", category=AuditCategory.DATA
        )
    async with sessions() as db, db.begin():
        run = await chain_pending_events(db, chain)
        assert run.linked_events == 1
    async with sessions() as db, db.begin():
        assert (await verify_chain(db, chain)).valid
        assert len(await stored_links(db)) == report["last_sequence"] + 1


async def test_a_role_that_owns_something_or_is_the_owner_is_refused(
    owner: AsyncEngine,
) -> None:
    role = _role_name()
    try:
        async with owner.begin() as connection:
            await apply_runtime_role(connection, role)
            await connection.execute(text("CREATE TABLE owned_by_runtime (id int)"))
            await connection.execute(text(f'ALTER TABLE owned_by_runtime OWNER TO "{role}"'))
        with pytest.raises(RuntimeRoleError, match=r"owns \d+ object"):
            async with owner.begin() as connection:
                await apply_runtime_role(connection, role)
        async with owner.begin() as connection:
            await connection.execute(text("DROP TABLE owned_by_runtime"))
            await connection.execute(text(f'GRANT pg_read_all_data TO "{role}"'))
        with pytest.raises(RuntimeRoleError, match="is a member of pg_read_all_data"):
            async with owner.begin() as connection:
                await apply_runtime_role(connection, role)
        for name, complaint in (("postgres", "must not be the role"), ("Bad-Name", "role name")):
            with pytest.raises(RuntimeRoleError, match=complaint):
                async with owner.begin() as connection:
                    await apply_runtime_role(connection, name)
    finally:
        await _drop_role(owner, role)


@pytest.fixture
def cli_environment(
    isolated_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """The command's settings: DATABASE_URL at a role that cannot create roles, the owner in
    MIGRATION_DATABASE_URL (the migration role here is the superuser of the test cluster)."""
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("MIGRATION_DATABASE_URL", isolated_settings.DATABASE_URL)
    get_settings.cache_clear()
    yield isolated_settings
    get_settings.cache_clear()


def test_the_command_creates_then_updates_the_role(
    postgres_only: None, cli_environment: Settings
) -> None:
    role = _role_name()
    runner = CliRunner()
    owner = create_engine(cli_environment)
    try:
        created = runner.invoke(cli, ["db", "create-runtime-role", role])
        assert created.exit_code == 0, created.output
        assert f"Role {role} created; it owns nothing." in created.output
        assert "  audit_events: SELECT, INSERT" in created.output
        assert "  audit_chain_state: SELECT, UPDATE" in created.output
        assert "  alembic_version: no access" in created.output
        again = runner.invoke(
            cli,
            ["db", "create-runtime-role", role, "--password"],
            input="s3cret-Pass\ns3cret-Pass\n",
        )
        assert again.exit_code == 0, again.output
        assert f"Role {role} updated" in again.output
        assert "s3cret-Pass" not in again.output.split("Repeat for confirmation:")[-1]
        refused = runner.invoke(cli, ["db", "create-runtime-role", "postgres"])
        assert refused.exit_code == 1
        assert "must not be the role that runs migrations" in refused.output
    finally:
        asyncio.run(_drop_and_dispose(owner, role))


async def _drop_and_dispose(owner: AsyncEngine, role: str) -> None:
    try:
        await _drop_role(owner, role)
    finally:
        await owner.dispose()


def test_the_command_refuses_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    monkeypatch.delenv("MIGRATION_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["db", "create-runtime-role", "metricis_app"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "PostgreSQL only" in result.output
