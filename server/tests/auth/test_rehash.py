"""A hash made with outdated Argon2 parameters is replaced at the next successful sign-in."""

from __future__ import annotations

import uuid

import httpx
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.user import User, UserRole, UserStatus

PASSWORD = "Correct-Horse-Battery-42"


async def test_outdated_hash_is_upgraded_on_login(
    client: httpx.AsyncClient, db_session: AsyncSession
) -> None:
    # The test settings hash with time_cost=1; this one was made with other parameters.
    old_hash = PasswordHash((Argon2Hasher(time_cost=2, memory_cost=2048, parallelism=1),)).hash(
        PASSWORD
    )
    user = User(
        id=uuid.uuid4(),
        email="old-hash@example.org",
        name="Old",
        role=UserRole.RESEARCHER,
        status=UserStatus.ACTIVE,
        password_hash=old_hash,
    )
    db_session.add(user)
    await db_session.commit()
    user_id = user.id
    response = await client.post(
        "/api/auth/login", json={"email": "old-hash@example.org", "password": PASSWORD}
    )
    assert response.status_code == 200
    refreshed = await db_session.get(User, user_id)
    assert refreshed is not None
    await db_session.refresh(refreshed)
    assert refreshed.password_hash != old_hash
    assert refreshed.password_hash is not None and "t=1" in refreshed.password_hash
    again = await client.post(
        "/api/auth/login", json={"email": "old-hash@example.org", "password": PASSWORD}
    )
    assert again.status_code == 200
