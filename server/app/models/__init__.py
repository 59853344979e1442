"""Every ORM model, imported here so that Alembic and the mappers see the whole schema."""

from app.db.base import Base

__all__ = ["Base"]
