"""The benchmark's baseline: the least a server must do for a submission.

A bare Starlette app that validates the same body with the same Pydantic model and COPYs the
same trial rows with asyncpg. The real endpoint adds authentication, authorisation, the
idempotency check, scoring, the source document and the audit event on top; the benchmark
reports its throughput as a fraction of this one's.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.schemas.assessments import SubmitRequest, TrialIn

DSN = os.environ.get("BASELINE_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
TABLE = "bench_baseline_trials"
COLUMNS = ["session_id", "task", "trial_index", "rt", "correct", "response", "stimulus", "extra"]


_KNOWN_FIELDS = frozenset(TrialIn.__annotations__)


def _extra_fields(trial: TrialIn) -> dict[str, object]:
    return {key: value for key, value in trial.items() if key not in _KNOWN_FIELDS}


async def submit(request: Request) -> JSONResponse:
    try:
        payload = SubmitRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        return JSONResponse({"error": str(exc)}, status_code=422)
    records = [
        (
            payload.session_id,
            trial["task"],
            trial["trial_index"],
            trial["rt"],
            trial["correct"],
            None if trial["response"] is None else str(trial["response"]),
            None if trial["stimulus"] is None else str(trial["stimulus"]),
            json.dumps(extra) if (extra := _extra_fields(trial)) else None,
        )
        for trial in payload.trials
    ]
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as connection, connection.transaction():
        await connection.copy_records_to_table(TABLE, records=records, columns=COLUMNS)
    return JSONResponse({"status": "success", "trials_stored": len(records)}, status_code=201)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(DSN, min_size=2, max_size=10)
    yield
    await app.state.pool.close()


app = Starlette(routes=[Route("/submit", submit, methods=["POST"])], lifespan=lifespan)


async def prepare_table(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            f"""
            DROP TABLE IF EXISTS {TABLE};
            CREATE TABLE {TABLE} (
                id bigserial PRIMARY KEY, session_id uuid NOT NULL, task text NOT NULL,
                trial_index integer NOT NULL, rt double precision, correct boolean,
                response text, stimulus text, extra jsonb
            );
            CREATE INDEX ON {TABLE} (session_id, task);
            """
        )
    finally:
        await connection.close()
