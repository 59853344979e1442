"""Writes two requests may attempt at the same moment: the database decides which one stores."""

from __future__ import annotations

import sqlite3

from sqlalchemy import inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

from app.db.base import Base

_UNIQUE_VIOLATION_SQLSTATE = "23505"
_SQLITE_UNIQUE_VIOLATIONS = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})


def insert_unless_present(session: AsyncSession, model: type[Base]) -> Insert:
    """`INSERT ... ON CONFLICT (primary key) DO NOTHING` in the session's dialect.

    Of concurrent inserts of one key exactly one stores; the others insert nothing and return no
    row. On PostgreSQL they first wait for the inserting transaction and insert nothing only once
    it has committed (a row it rolls back is inserted by the next), so a read that follows sees
    the stored row. On SQLite the write lock has serialised them already.
    """
    dialect = session.get_bind().dialect.name
    statement = postgresql.insert(model) if dialect == "postgresql" else sqlite.insert(model)
    return statement.on_conflict_do_nothing(index_elements=list(inspect(model).primary_key))


def is_unique_violation(error: IntegrityError) -> bool:
    """Whether the database refused a row because another with the same key is stored."""
    cause = error.orig
    if isinstance(cause, sqlite3.IntegrityError):
        return getattr(cause, "sqlite_errorname", None) in _SQLITE_UNIQUE_VIOLATIONS
    return getattr(cause, "sqlstate", None) == _UNIQUE_VIOLATION_SQLSTATE
