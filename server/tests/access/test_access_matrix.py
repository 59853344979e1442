"""Every study-scoped route × every kind of caller (tests/access/matrix.py holds the table).

Each cell runs inside a savepoint of the test's connection that is rolled back afterwards, so
every cell sees the same starting state and no cell depends on the order of the others.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tests.access.matrix import MATRIX, NOT_STUDY_SCOPED, PREFIXES, Row, judge
from tests.access.world import PRINCIPALS, Principal, World

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


async def run_cell(
    client: httpx.AsyncClient,
    db_connection: AsyncConnection,
    db_session: AsyncSession,
    world: World,
    row: Row,
    principal: Principal,
) -> httpx.Response:
    call = row.route.call(world, principal)
    await db_session.commit()  # nothing of the session's may straddle the cell's savepoint
    savepoint = await db_connection.begin_nested()
    try:
        return await client.request(
            row.route.method,
            call.url,
            headers=dict(world.headers[principal]),
            params=dict(call.params) if call.params is not None else None,
            json=dict(call.json) if call.json is not None else None,
            data=dict(call.data) if call.data is not None else None,
            files=dict(call.files) if call.files is not None else None,
        )
    finally:
        await db_session.rollback()
        await savepoint.rollback()
        # The identity map may hold what the cell changed; the next cell must read the database.
        db_session.expunge_all()


async def test_access_matrix(
    client: httpx.AsyncClient,
    db_connection: AsyncConnection,
    db_session: AsyncSession,
    world: World,
) -> None:
    mismatches: list[str] = []
    for row in MATRIX:
        for principal in PRINCIPALS:
            response = await run_cell(client, db_connection, db_session, world, row, principal)
            mismatches.extend(
                f"{row.route.name} ({row.route.method} {row.route.path}) × {principal.value}: "
                f"{problem}"
                for problem in judge(row, world, principal, response)
            )
    cells = len(MATRIX) * len(PRINCIPALS)
    if mismatches:
        pytest.fail(
            f"{len(mismatches)} of {cells} access-matrix cells are wrong:\n"
            + "\n".join(mismatches),
            pytrace=False,
        )


def _in_scope(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in PREFIXES)


def test_matrix_covers_every_study_scoped_route(app: FastAPI) -> None:
    """A new route under the matrix's prefixes fails here until the matrix has a row for it."""
    served = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if _in_scope(path)
        for method in operations
        if method.upper() in HTTP_METHODS
    }
    covered = {(row.route.method, row.route.path) for row in MATRIX}
    missing = sorted(served - covered - set(NOT_STUDY_SCOPED))
    stale = sorted((covered | set(NOT_STUDY_SCOPED)) - served)
    assert not missing, f"study-scoped routes missing from tests/access/matrix.py: {missing}"
    assert not stale, f"routes in tests/access/matrix.py that the app does not serve: {stale}"
    assert not covered & set(NOT_STUDY_SCOPED), "a route is both in the matrix and excluded"


def test_matrix_rows_are_distinct_and_complete() -> None:
    names = [row.route.name for row in MATRIX]
    assert len(names) == len(set(names)), "two rows share a name"
    for row in MATRIX:
        assert set(row.expected) == set(PRINCIPALS), row.route.name
