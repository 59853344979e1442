"""The `metricis` command."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
import uvicorn

from app.config import UnsafeProductionSettingsError, check_production_settings, get_settings
from app.db import migrations

cli = typer.Typer(help="Metricis server administration.", no_args_is_help=True)
db_cli = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")


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
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.HOST,
        port=port or settings.PORT,
        workers=None if reload else (workers or settings.WORKERS),
        reload=reload,
        log_config=None,  # create_app routes uvicorn's logs through structlog
        proxy_headers=bool(settings.TRUSTED_PROXIES),
        forwarded_allow_ips=",".join(settings.TRUSTED_PROXIES) or None,
        server_header=False,
    )


@db_cli.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    migrations.upgrade(get_settings().DATABASE_URL, revision)
    typer.echo(f"Database upgraded to {revision}.")


@db_cli.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument()]) -> None:
    """Revert migrations down to REVISION (`-1` for one step, `base` for all)."""
    migrations.downgrade(get_settings().DATABASE_URL, revision)
    typer.echo(f"Database downgraded to {revision}.")


def main() -> None:
    sys.exit(cli())
