"""Fixtures for the access matrix: one world per test, built in the test's transaction."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from tests.access.world import World, build_world


@pytest.fixture
async def world(db_session: AsyncSession, client: httpx.AsyncClient, settings: Settings) -> World:
    return await build_world(db_session, client, settings)
