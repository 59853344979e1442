"""A dispatcher run that loses its database fails with the database's own error, so the Celery
task's automatic retry (which matches on the error's type) takes it again with backoff, instead
of the run being dropped until beat's next scan."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.db.session import create_engine, create_sessionmaker
from app.services.webhooks.dispatcher import dispatch_webhooks
from app.workers.tasks import RETRYABLE_ERRORS
from tests.webhooks.conftest import webhook_settings

# Nothing listens on port 1: every connection is refused, as when the database is restarting.
UNREACHABLE_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:1/metricis"


async def test_a_run_without_its_database_raises_a_retryable_error(storage_dir: Path) -> None:
    settings = webhook_settings(UNREACHABLE_POSTGRES, storage_dir, OUTBOX_DISPATCH_CONCURRENCY=3)
    engine = create_engine(settings)
    try:
        with pytest.raises(Exception) as raised:
            await dispatch_webhooks(create_sessionmaker(engine), settings)
    finally:
        await engine.dispose()
    # Several lanes fail at once; what reaches the task is one of their errors, not a group.
    assert not isinstance(raised.value, BaseExceptionGroup)
    assert isinstance(raised.value, RETRYABLE_ERRORS), repr(raised.value)
