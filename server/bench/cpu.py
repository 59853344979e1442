"""CPU time of the processes a benchmark drives, read from /proc (Linux), so a run can report
CPU per request: the server's process tree, and the PostgreSQL backends serving one database."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process; 0 when it is gone or /proc is not there."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # After the command name: state is field 3; utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        for task in tasks:
            text = (task / "children").read_text().split()
            found.extend(int(child) for child in text)
    except OSError:
        return found
    return found


def tree_pids(pid: int) -> list[int]:
    """`pid` and every descendant."""
    pending, seen = [pid], []
    while pending:
        current = pending.pop()
        seen.append(current)
        pending.extend(_children(current))
    return seen


def tree_cpu_seconds(pid: int) -> float:
    return sum(process_cpu_seconds(p) for p in tree_pids(pid))


async def backend_pids(dsn: str, database: str) -> list[int]:
    """The PostgreSQL backends connected to `database`, except the one asking."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await connection.close()
    return [row["pid"] for row in rows]


def pids_cpu_seconds(pids: list[int]) -> float:
    return sum(process_cpu_seconds(p) for p in pids)
