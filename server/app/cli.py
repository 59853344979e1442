"""The `metricis` command."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import uvicorn
from celery import Celery
from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import (
    EmailBackend,
    Settings,
    UnsafeProductionSettingsError,
    check_production_settings,
    get_settings,
)
from app.core.errors import DomainError, NotFoundError
from app.core.security import FieldEncryptor, configure_password_hashing
from app.db import migrations
from app.db.runtime_role import RuntimeRoleError, RuntimeRoleReport, apply_runtime_role
from app.db.session import create_engine, run_in_transaction, run_with_sessions, transaction_scope
from app.models.assessment import AssessmentSession
from app.models.audit import ActorType
from app.models.study import Study
from app.models.user import User, UserRole
from app.services.audit import (
    AuditContext,
    ChainRun,
    ChainSettings,
    ChainVerification,
    Checkpoint,
    publish_due_checkpoint,
    run_chainer,
    verify_chain,
)
from app.services.demo.seed import DEMO_PASSWORD, DemoSummary, seed_demo
from app.services.session_store import MemorySessionStore
from app.services.source_documents import MINIMUM_GRACE_SECONDS, SweepReport, sweep_orphans
from app.services.source_storage import SourceStorage
from app.services.submissions import rescore_session
from app.services.users import create_user
from app.serving import Companion, serve_with_reuse_port
from app.workers.commands import CELERY_APP, beat_arguments, worker_arguments
from app.workers.queues import QUEUES

ResultT = TypeVar("ResultT")

# Beyond the grace period: time for the lifespan to close the database pool and the store.
STOP_MARGIN_SECONDS = 5.0


# Never print local variables in a traceback: they hold passwords, tokens and connection strings.
cli = typer.Typer(
    help="Metricis server administration.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_cli = typer.Typer(
    help="Database schema migrations.", no_args_is_help=True, pretty_exceptions_show_locals=False
)
cli.add_typer(db_cli, name="db")
audit_cli = typer.Typer(
    help="The audit trail's keyed chain.", no_args_is_help=True, pretty_exceptions_show_locals=False
)
cli.add_typer(audit_cli, name="audit")
storage_cli = typer.Typer(
    help="Source documents in storage (STORAGE_DIR or the bucket).", no_args_is_help=True
)
cli.add_typer(storage_cli, name="storage")


def _fail(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default: HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: PORT)")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: WORKERS)")] = None,
    reload: Annotated[bool, typer.Option(help="Reload on code changes (development)")] = False,
) -> None:
    """Serve the API with uvicorn."""
    settings = get_settings()
    try:
        check_production_settings(settings)
    except UnsafeProductionSettingsError as exc:
        _fail(str(exc))
    options: dict[str, Any] = {
        "log_config": None,  # create_app routes uvicorn's logs through structlog
        "proxy_headers": bool(settings.TRUSTED_PROXIES),
        "forwarded_allow_ips": ",".join(settings.TRUSTED_PROXIES) or None,
        "server_header": False,
        "timeout_graceful_shutdown": settings.SHUTDOWN_GRACE_SECONDS,
    }
    processes = workers or settings.WORKERS
    if settings.uses_embedded_broker and reload:
        typer.echo(
            "The embedded background worker does not run with --reload: "
            "start `metricis worker --beat` in another terminal."
        )
    if (processes > 1 or settings.uses_embedded_broker) and not reload:
        serve_with_reuse_port(
            host or settings.HOST,
            port or settings.PORT,
            processes,
            options,
            stop_timeout=settings.SHUTDOWN_GRACE_SECONDS + STOP_MARGIN_SECONDS,
            companion=_embedded_worker(settings) if settings.uses_embedded_broker else None,
        )
        return
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.HOST,
        port=port or settings.PORT,
        reload=reload,
        **options,
    )


def _embedded_worker(settings: Settings) -> Companion:
    """Without a broker server the API supervisor runs one worker, beat embedded, on every
    queue: the same tasks a production deployment runs in services of its own."""
    arguments = worker_arguments(concurrency=1, with_beat=True, log_level=settings.LOG_LEVEL)
    return Companion([sys.executable, "-m", "celery", "-A", CELERY_APP, *arguments])


@cli.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues to work on")] = ",".join(
        QUEUES
    ),
    concurrency: Annotated[
        int | None, typer.Option(help="Task processes (default: one per core)")
    ] = None,
    beat: Annotated[
        bool, typer.Option(help="Run beat inside this worker (one machine only)")
    ] = False,
) -> None:
    """Run a background worker (Celery) until SIGTERM, which lets running tasks finish."""
    chosen = [name.strip() for name in queues.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(QUEUES))
    if unknown or not chosen:
        _fail(
            f"Unknown queue(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(QUEUES)}."
        )
    settings = get_settings()
    _check_sqlite_folder(settings.DATABASE_URL)
    arguments = worker_arguments(
        queues=chosen, concurrency=concurrency, with_beat=beat, log_level=settings.LOG_LEVEL
    )
    _celery_app().worker_main(arguments)


@cli.command()
def beat() -> None:
    """Run celery beat, the clock of periodic tasks: exactly one per deployment."""
    settings = get_settings()
    _celery_app().start(beat_arguments(log_level=settings.LOG_LEVEL))


def _celery_app() -> Celery:
    # Imported here, not at the top: the module builds its application from the settings on
    # import, and other commands must not depend on the broker's configuration.
    from app.workers.celery_app import celery_app

    return celery_app


def _check_sqlite_folder(database_url: str) -> None:
    """Refuse an SQLite path whose folder is missing before aiosqlite tries it: its worker thread
    then reports the failure on a closed event loop, which prints a second traceback."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    folder = Path(url.database).expanduser().resolve().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        _fail(
            f"Cannot open the SQLite database {url.database}: "
            "create its folder or set DATABASE_URL to a writable path."
        )


@db_cli.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: the latest), as the schema's owner
    (MIGRATION_DATABASE_URL when set, else DATABASE_URL)."""
    url = get_settings().migration_database_url
    _check_sqlite_folder(url)
    migrations.upgrade(url, revision)
    typer.echo(f"Database upgraded to {revision}.")


@db_cli.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument()]) -> None:
    """Revert migrations down to REVISION (`-1` for one step, `base` for all), as the schema's
    owner (MIGRATION_DATABASE_URL when set, else DATABASE_URL)."""
    url = get_settings().migration_database_url
    _check_sqlite_folder(url)
    migrations.downgrade(url, revision)
    typer.echo(f"Database downgraded to {revision}.")


@db_cli.command("create-runtime-role")
def db_create_runtime_role(
    name: Annotated[str, typer.Argument(help="The role the API and workers will log in as")],
    password: Annotated[
        bool, typer.Option("--password", help="Prompt for the role's login password")
    ] = False,
) -> None:
    """Create or update the PostgreSQL role the API and workers run under: it owns nothing and
    may only read and append to the audit tables. Run as the owner (MIGRATION_DATABASE_URL),
    again after every `db upgrade`; then point DATABASE_URL at this role."""
    settings = get_settings()
    if make_url(settings.migration_database_url).get_backend_name() != "postgresql":
        _fail("Database roles exist on PostgreSQL only; SQLite has no runtime role.")
    secret = (
        typer.prompt("Password", hide_input=True, confirmation_prompt=True) if password else None
    )

    async def apply() -> RuntimeRoleReport:
        owner_settings = settings.model_copy(
            update={"DATABASE_URL": settings.migration_database_url}
        )
        engine = create_engine(owner_settings)
        try:
            async with engine.begin() as connection:
                return await apply_runtime_role(connection, name, secret)
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(apply())
    except RuntimeRoleError as exc:
        _fail(f"Cannot use role {name}: {exc}.")
    typer.echo(f"Role {report.name} {'created' if report.created else 'updated'}; it owns nothing.")
    for table, privileges in report.grants.items():
        typer.echo(f"  {table}: {', '.join(privileges) or 'no access'}")
    typer.echo("  sequences: USAGE, SELECT")
    for warning in report.warnings:
        typer.secho(f"Warning: {warning}", fg=typer.colors.YELLOW, err=True)


def _print_verification(result: ChainVerification, run: ChainRun) -> None:
    if run.state_problem is not None:
        typer.echo(f"The chainer did not run: {run.state_problem}.")
    if result.valid:
        typer.echo(
            f"The audit chain is valid: {result.events_checked} events and "
            f"{result.gaps_checked} gaps up to sequence {result.last_sequence}, "
            f"{result.checkpoints_checked} checkpoints agree"
            + (
                f"; {result.events_pending} events wait for a transaction still running"
                if result.events_pending
                else ""
            )
            + "."
        )
        return
    where = (
        f" at sequence {result.first_broken_sequence}"
        if result.first_broken_sequence is not None
        else ""
    )
    typer.secho(
        f"The audit chain is BROKEN{where}: {result.problem} "
        f"({result.events_checked} events verified before it).",
        fg=typer.colors.RED,
        err=True,
    )


@audit_cli.command("verify")
def audit_verify(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Link the pending events, then verify the whole chain and every checkpoint; exits 1 when
    something does not hold."""
    settings = get_settings()
    _check_sqlite_folder(settings.DATABASE_URL)
    chain = ChainSettings.from_settings(settings)

    async def work(
        sessions: async_sessionmaker[AsyncSession],
    ) -> tuple[ChainRun, ChainVerification]:
        run = await run_chainer(sessions, chain)
        async with sessions() as session, transaction_scope(session):
            return run, await verify_chain(session, chain)

    run, result = run_with_sessions(settings, work)
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(result), default=str, indent=2))
    else:
        _print_verification(result, run)
    if not result.valid:
        raise typer.Exit(code=1)


@audit_cli.command("checkpoint")
def audit_checkpoint() -> None:
    """Link the pending events and publish a signed checkpoint of the chain's end now."""
    settings = get_settings()
    _check_sqlite_folder(settings.DATABASE_URL)
    chain = ChainSettings.from_settings(settings)

    async def work(sessions: async_sessionmaker[AsyncSession]) -> Checkpoint | None:
        run = await run_chainer(sessions, chain)
        if run.state_problem is not None:
            _fail(f"The chainer did not run: {run.state_problem}.")
        async with sessions() as session, transaction_scope(session):
            return await publish_due_checkpoint(session, chain, force=True, wait_for_lock=True)

    checkpoint = run_with_sessions(settings, work)
    if checkpoint is None:
        typer.echo("The chain is empty: nothing to checkpoint.")
        return
    typer.echo(
        f"Checkpoint at sequence {checkpoint.sequence} published to "
        f"{settings.audit_checkpoint_dir} (key {checkpoint.key_id})."
    )


def _in_transaction(work: Callable[[AsyncSession], Awaitable[ResultT]]) -> ResultT:
    _check_sqlite_folder(get_settings().DATABASE_URL)
    configure_password_hashing(get_settings())
    return run_in_transaction(get_settings(), work)


def _cli_context() -> AuditContext:
    return AuditContext(actor_type=ActorType.SYSTEM, actor_id="cli", user_agent="metricis-cli")


@cli.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(prompt=True, help="The administrator's email")],
    name: Annotated[str, typer.Option(prompt=True, help="Full name")] = "Administrator",
    password: Annotated[
        str,
        typer.Option(
            prompt=True, hide_input=True, confirmation_prompt=True, help="At least 12 characters"
        ),
    ] = "",
) -> None:
    """Create an administrator (prompts for what is not given as an option)."""

    async def work(session: AsyncSession) -> User:
        created = await create_user(
            session,
            _cli_context(),
            email=email,
            name=name,
            role=UserRole.ADMIN,
            password=password,
            must_change_password=False,
        )
        return created.user

    try:
        user = _in_transaction(work)
    except DomainError as exc:
        details = exc.details.get("errors") or exc.details
        _fail(f"{exc.message}: {details}")
    typer.echo(f"Administrator {user.email} created.")


@cli.command()
def demo() -> None:
    """Create the demo users, study, consent form, battery and sessions (development only) and
    print how to sign in; run again, it adds nothing and issues a fresh participant access code."""
    settings = get_settings()
    if settings.is_production:
        _fail("The demo data is for development; it is refused with ENVIRONMENT=production.")

    async def work(session: AsyncSession) -> DemoSummary:
        # The demo's session ends before the command does: its live state needs no shared store.
        return await seed_demo(
            session,
            settings,
            FieldEncryptor.from_settings(settings),
            MemorySessionStore(),
            SourceStorage.from_settings(settings),
        )

    summary = _in_transaction(work)
    base = f"http://{settings.HOST}:{settings.PORT}"
    typer.echo("Demo data " + ("created." if summary.created else "already present."))
    typer.echo(f"  Staff sign in at {base}/docs (Authorize) or POST {base}/api/auth/login")
    typer.echo(f"  password for every demo account: {DEMO_PASSWORD}")
    for email, role in summary.staff:
        typer.echo(f"  {role.value:<12} {email}")
    typer.echo(f"  study: {summary.study_code}, battery id {summary.battery_id}")
    typer.echo(
        f"  participant {summary.completed_participant_code} has consented and completed their "
        f"baseline visit (GET {base}/api/sessions as a staff member)"
    )
    typer.echo(
        "  visits (baseline, then monthly): "
        f"GET {base}/api/schedules/visits/upcoming?study_id={summary.study_id}"
    )
    if summary.reminder_participant_code is not None:
        typer.echo(
            f"  participant {summary.reminder_participant_code}'s baseline window is open and its "
            "opening email is due: within a minute of `metricis serve` starting, the reminder "
            "scan writes it and the worker prints it here (console email backend)"
        )
    if summary.access_code is None:
        typer.echo(f"  participant {summary.participant_code} has withdrawn: no access code issued")
        return
    sign_in = {
        "study_code": summary.study_code,
        "participant_id": summary.participant_code,
        "access_code": summary.access_code,
    }
    typer.echo(f"  participant {summary.participant_code} can start now:")
    typer.echo(f"    POST {base}/api/auth/participant {json.dumps(sign_in)}")
    typer.echo("    (every run issues a new access code; the previous one stops working)")
    steps = ["GET /api/sync/manifest (the battery and the consent form)"]
    if summary.participant_must_sign_consent:
        steps.append("POST /api/consent/sign")
    steps += [
        "POST /api/session/start",
        "POST /api/submit (header X-Session-ID)",
        "POST /api/session/end",
    ]
    typer.echo("    then " + ", ".join(steps))
    if settings.email_backend is EmailBackend.CONSOLE:
        typer.echo("  magic-link emails are printed by the server (EMAIL_BACKEND=console)")


@storage_cli.command("sweep")
def storage_sweep(
    grace_hours: Annotated[
        float,
        typer.Option(
            "--grace-hours",
            min=MINIMUM_GRACE_SECONDS / 3600,
            help="Only files last modified longer ago than this (a younger one may belong to a "
            "transaction still running).",
        ),
    ] = 24.0,
    remove: Annotated[
        bool, typer.Option("--remove", help="Remove the orphans found (default: only report)")
    ] = False,
) -> None:
    """Find source documents no task result points at (left by a crash between the write and
    the commit); report them, or remove them with --remove."""
    settings = get_settings()
    storage = SourceStorage.from_settings(settings)

    async def work(session: AsyncSession) -> SweepReport:
        return await sweep_orphans(
            session, storage, grace_seconds=grace_hours * 3600, remove=remove
        )

    report = _in_transaction(work)
    for path in report.orphans:
        typer.echo(path)
    verb = "Removed" if remove else "Found"
    typer.echo(
        f"{verb} {len(report.orphans)} orphaned source documents "
        f"of {report.checked} older than {grace_hours:g} h."
    )


@cli.command()
def rescore(
    study: Annotated[str, typer.Option("--study", help="The study code, e.g. NEURO-2024-001")],
) -> None:
    """Recompute every stored task of a study with the current scorers (keeps old results)."""
    settings = get_settings()

    async def work(session: AsyncSession) -> tuple[int, int]:
        record = await session.scalar(select(Study).where(Study.code == study.strip().upper()))
        if record is None:
            raise NotFoundError(f"No study with code {study}")
        storage = SourceStorage.from_settings(settings)
        sessions = (
            await session.scalars(
                select(AssessmentSession)
                .where(AssessmentSession.study_id == record.id)
                .order_by(AssessmentSession.started_at)
            )
        ).all()
        tasks = 0
        for assessment in sessions:
            tasks += len(await rescore_session(session, storage, _cli_context(), assessment))
        return len(sessions), tasks

    try:
        sessions, tasks = _in_transaction(work)
    except DomainError as exc:
        _fail(exc.message)
    typer.echo(f"Rescored {tasks} tasks in {sessions} sessions of {study}.")


def database_problem(exc: BaseException, database_url: str) -> str | None:
    """One line saying what is wrong with the configured database, or None for other errors."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if isinstance(exc, sa_exc.OperationalError) and "unable to open" in str(exc.orig):
            return (
                f"Cannot open the SQLite database {url.database}: "
                "create its folder or set DATABASE_URL to a writable path."
            )
        return None
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    text = str(exc)
    if sqlstate == "3D000" or ("does not exist" in text and "database" in text):
        return (
            f'The database "{url.database}" does not exist on {where}. Create it, for example '
            f"`createdb -h {url.host or 'localhost'} -p {url.port or 5432} "
            f"-U {url.username or 'postgres'} {url.database}`, "
            "or set DATABASE_URL to one that exists."
        )
    if sqlstate in ("28000", "28P01"):
        return f'PostgreSQL on {where} refused the user "{url.username}": check DATABASE_URL.'
    if isinstance(exc, OSError | sa_exc.OperationalError | sa_exc.InterfaceError) or isinstance(
        getattr(exc, "orig", None), OSError
    ):
        return f"Cannot reach PostgreSQL on {where}: is it running? (DATABASE_URL)"
    return None


def main() -> None:
    try:
        cli()
    except Exception as exc:
        problem = database_problem(exc, get_settings().DATABASE_URL)
        if problem is None:
            raise
        typer.secho(problem, fg=typer.colors.RED, err=True)
        sys.exit(1)
