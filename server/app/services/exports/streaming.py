"""A study's trials as CSV, streamed straight from the database (docs/exports.md, direct
download): constant memory whatever the number of rows.

On PostgreSQL the query runs as `COPY (...) TO STDOUT WITH CSV HEADER` through asyncpg: the
server formats the CSV and the chunks go to the client as they arrive, through a small bounded
queue (a slow client slows the copy instead of filling memory). Elsewhere (SQLite) the rows come
from a server-side cursor in batches and are formatted here. The columns are the trials table's
of the export jobs (datasets.TRIAL_COLUMNS), with the same scope rules and filters.

`spreadsheet_safe` (the default) neutralises text cells that a spreadsheet would run as a formula,
as the jobs' CSV does; scripts that want the exact stored text turn it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import String, case, cast, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.services.exports import datasets
from app.services.exports.scope import ExportScope
from app.services.exports.spreadsheet import csv_cell

QUEUE_CHUNKS = 16
CHUNK_BYTES = 64 * 1024
FLUSH_BYTES = 256 * 1024
# A text cell a spreadsheet runs as a formula (spreadsheet.FORMULA_STARTS), as a POSIX class.
_FORMULA_PATTERN = "^[-=+@\t\r]"


def _neutralised(column: Any, name: str) -> Any:
    text = cast(column, String)
    return case((text.regexp_match(_FORMULA_PATTERN), literal("'") + text), else_=text).label(name)


def _boolean_text(column: Any, name: str) -> Any:
    return case((column.is_(True), literal("true")), (column.is_(False), literal("false"))).label(
        name
    )


def copy_statement(scope: ExportScope, spreadsheet_safe: bool) -> Any:
    """The trials query with PostgreSQL doing what the Python writer does per cell."""
    base = datasets.trials_select(scope).subquery("t")
    columns: list[Any] = []
    text_columns = {"participant_code", "site_code", "visit_key", "visit_label", "task"}
    text_columns |= {"response", "stimulus", "condition", "extra", "scorer_version"}
    for column in datasets.TRIAL_COLUMNS:
        source = base.c[column.name]
        if column.type == "boolean":
            columns.append(_boolean_text(source, column.name))
        elif column.name in text_columns and spreadsheet_safe:
            columns.append(_neutralised(source, column.name))
        elif column.name == "extra":
            columns.append(cast(source, String).label(column.name))
        else:
            columns.append(source.label(column.name))
    return select(*columns).select_from(base).order_by(base.c.trial_id)


async def _copy_chunks(
    session: AsyncSession, scope: ExportScope, spreadsheet_safe: bool
) -> AsyncIterator[bytes]:
    connection = await session.connection()
    compiled = copy_statement(scope, spreadsheet_safe).compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    arguments = [compiled.params[name] for name in compiled.positiontup or ()]
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=QUEUE_CHUNKS)

    pending = bytearray()

    async def put(chunk: bytes) -> None:
        # asyncpg hands over what each network read brought; the client gets larger chunks.
        pending.extend(chunk)
        if len(pending) >= CHUNK_BYTES:
            await queue.put(bytes(pending))
            pending.clear()

    async def produce() -> None:
        try:
            await driver.copy_from_query(
                str(compiled), *arguments, output=put, format="csv", header=True
            )
            if pending:
                await queue.put(bytes(pending))
        finally:
            await queue.put(None)

    producer = asyncio.create_task(produce())
    try:
        while (chunk := await queue.get()) is not None:
            yield chunk
        await producer  # raises what the copy raised
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer


async def _cursor_chunks(
    session: AsyncSession, scope: ExportScope, spreadsheet_safe: bool
) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = [column.name for column in datasets.TRIAL_COLUMNS]

    def cell(value: Any) -> Any:
        text = datasets.text_cell(value)
        if isinstance(text, bool):
            return "true" if text else "false"
        return csv_cell(text) if spreadsheet_safe else text

    writer.writerow(names)
    async for row in datasets.trial_rows(session, scope):
        writer.writerow([cell(row[name]) for name in names])
        if buffer.tell() >= FLUSH_BYTES:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def trials_csv(
    session: AsyncSession, scope: ExportScope, *, spreadsheet_safe: bool = True
) -> AsyncIterator[bytes]:
    """The CSV's bytes, in chunks; `session` must stay open until the last one."""
    if session.get_bind().dialect.name == "postgresql":
        return _copy_chunks(session, scope, spreadsheet_safe)
    return _cursor_chunks(session, scope, spreadsheet_safe)
