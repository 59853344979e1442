"""Writes two requests may attempt at the same moment: the database decides which one stores."""

from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

from app.db.base import Base


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
