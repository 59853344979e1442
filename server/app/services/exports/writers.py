"""An export's file: a zip holding the tables asked for and their codebook.

CSV tables are for spreadsheets: cells are neutralised (spreadsheet.py), booleans are `true` and
`false`, JSON fields compact JSON. JSON Lines keep every value exactly as stored; so does
Parquet, typed from the codebook (JSON fields as JSON text), in row groups of a batch each.
The codebook is written twice, as `codebook.csv` and `codebook.json`: one entry per column of
every table (table, name, type, unit, meaning, scorer version).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from app.services.exports.datasets import BATCH_ROWS, Column, Row, plain, text_cell
from app.services.exports.spreadsheet import csv_cell

Progress = Callable[[int], Awaitable[None]]
CODEBOOK_FIELDS = ("table", "name", "type", "unit", "meaning", "scorer_version")
PROGRESS_EVERY_ROWS = 5000


@dataclass(frozen=True, slots=True)
class Table:
    name: str  # file name without extension: trials, scores, sessions, participants
    columns: tuple[Column, ...]
    rows: AsyncIterator[Row]


@dataclass(frozen=True, slots=True)
class WrittenFile:
    size_bytes: int
    sha256: str
    rows: int


async def write_csv(handle: IO[bytes], table: Table, progress: Progress) -> int:
    text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow([csv_cell(column.name) for column in table.columns])
    names = [column.name for column in table.columns]
    count = 0
    async for row in table.rows:
        writer.writerow([csv_cell(text_cell(row.get(name))) for name in names])
        count += 1
        if count % PROGRESS_EVERY_ROWS == 0:
            await progress(PROGRESS_EVERY_ROWS)
    await progress(count % PROGRESS_EVERY_ROWS)
    text.flush()
    text.detach()
    return count


async def write_jsonl(handle: IO[bytes], table: Table, progress: Progress) -> int:
    names = [column.name for column in table.columns]
    count = 0
    async for row in table.rows:
        document = {name: plain(row.get(name)) for name in names}
        handle.write(json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode())
        handle.write(b"\n")
        count += 1
        if count % PROGRESS_EVERY_ROWS == 0:
            await progress(PROGRESS_EVERY_ROWS)
    await progress(count % PROGRESS_EVERY_ROWS)
    return count


_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "uuid": pa.string(),
    "json": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "datetime": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
}


def arrow_schema(columns: tuple[Column, ...]) -> pa.Schema:
    """The Parquet schema of a table, from its codebook; each field's metadata holds the
    codebook entry, so the file describes itself."""
    return pa.schema(
        [
            pa.field(
                column.name,
                _ARROW_TYPES[column.type],
                metadata={key: value for key, value in column.as_json().items() if value},
            )
            for column in columns
        ]
    )


def _arrow_value(column: Column, value: Any) -> Any:
    if value is None:
        return None
    if column.type in ("uuid", "json"):
        return text_cell(value)
    if column.type == "string":
        return str(value)
    return value


async def write_parquet(handle: IO[bytes], table: Table, progress: Progress) -> int:
    """Row groups of BATCH_ROWS rows: memory stays bounded by one batch."""
    schema = arrow_schema(table.columns)
    count = 0
    batch: list[Row] = []
    with pq.ParquetWriter(handle, schema, compression="zstd") as writer:

        def flush() -> None:
            arrays = [
                pa.array(
                    [_arrow_value(column, row.get(column.name)) for row in batch],
                    type=_ARROW_TYPES[column.type],
                )
                for column in table.columns
            ]
            writer.write_batch(pa.record_batch(arrays, schema=schema))

        async for row in table.rows:
            batch.append(row)
            if len(batch) == BATCH_ROWS:
                flush()
                count += len(batch)
                await progress(len(batch))
                batch = []
        if batch or count == 0:
            flush()
            count += len(batch)
            await progress(len(batch))
    return count


TableWriter = Callable[[IO[bytes], Table, Progress], Awaitable[int]]
EXTENSIONS: dict[str, tuple[str, TableWriter]] = {
    "csv": ("csv", write_csv),
    "json": ("jsonl", write_jsonl),
    "parquet": ("parquet", write_parquet),
}


def codebook_entries(tables: list[tuple[str, tuple[Column, ...]]]) -> list[dict[str, str]]:
    return [{"table": table, **column.as_json()} for table, columns in tables for column in columns]


def codebook_csv(entries: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CODEBOOK_FIELDS, lineterminator="\r\n")
    writer.writeheader()
    for entry in entries:
        writer.writerow({key: csv_cell(value) for key, value in entry.items()})
    return buffer.getvalue().encode()


async def write_archive(
    path: Path,
    file_format: str,
    tables: list[Table],
    readme: dict[str, Any],
    progress: Progress,
) -> WrittenFile:
    """The zip at `path`: each table, then the codebook and a `export.json` describing the
    export (study, filters, contact details or not)."""
    extension, writer = EXTENSIONS[file_format]
    rows = 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for table in tables:
            member_name = f"{table.name}.{extension}"
            if file_format == "parquet":
                # Parquet writes its footer last and wants a real file: made beside the zip.
                part = path.with_suffix(f".{table.name}.parquet")
                try:
                    with part.open("wb") as handle:
                        rows += await writer(handle, table, progress)
                    archive.write(part, member_name, compress_type=zipfile.ZIP_STORED)
                finally:
                    part.unlink(missing_ok=True)
                continue
            with archive.open(member_name, "w", force_zip64=True) as member:
                rows += await writer(member, table, progress)
        entries = codebook_entries([(table.name, table.columns) for table in tables])
        archive.writestr("codebook.csv", codebook_csv(entries))
        archive.writestr("codebook.json", json.dumps(entries, indent=2, ensure_ascii=False))
        archive.writestr("export.json", json.dumps(readme, indent=2, ensure_ascii=False))
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return WrittenFile(size_bytes=size, sha256=digest.hexdigest(), rows=rows)
