"""Data access for accounts: fastcrud's typed ``FastCRUD`` over ``users`` for the admin page,
existence checks and counts, and hand-written statements only where it cannot serve (the ORM
rows a write changes, the compiled hot read of ``/users/me``)."""

from __future__ import annotations

import uuid
from typing import Any

from fastcrud import FastCRUD
from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.database import Database
from common.models.user import User
from user_service.app.schemas import UserAdminUpdate, UserCreate, UserRead

# FastCRUD[model, create, update, update-internal, delete, select]: the schemas it would validate.
crud_users: FastCRUD[User, UserCreate, UserAdminUpdate, UserAdminUpdate, UserRead, UserRead] = FastCRUD(User)


def is_uuid(value: str) -> bool:
    """Whether an id can be a user id at all: anything else is never sent to the database
    (PostgreSQL refuses e.g. NUL characters that SQLite would accept)."""
    try:
        uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


async def get_user(session: AsyncSession, user_id: str) -> User | None:
    """The user with this id; None for anything that is not a UUID."""
    return await session.get(User, user_id) if is_uuid(user_id) else None


def _public_by_id() -> Select[Any]:
    # Exactly the fields of ``UserRead``: never the password hash.
    columns = (User.__table__.c[name] for name in UserRead.model_fields)
    return select(*columns).where(User.id == bindparam("user_id"))


async def get_public_user_quick(db: Database, user_id: str) -> dict[str, Any] | None:
    """The hot read of ``GET /users/me``: the user's public columns through ``Database.quick``
    (no ORM session); None for a missing user or an id that is not a UUID."""
    if not is_uuid(user_id):
        return None
    rows = await db.quick.rows("users.public_by_id", _public_by_id, user_id=user_id)
    return rows[0] if rows else None


async def list_users(session: AsyncSession, offset: int, limit: int) -> tuple[list[UserRead], int]:
    """(a page of users, oldest first, the total) through fastcrud's ``get_multi``."""
    page = await crud_users.get_multi(
        session, offset=offset, limit=limit, schema_to_select=UserRead, sort_columns="created_at", sort_orders="asc"
    )
    return [UserRead.model_validate(row) for row in page["data"]], page["total_count"]


async def other_active_admins(session: AsyncSession, user_id: str) -> int:
    """How many active admins there are besides ``user_id``."""
    return await crud_users.count(session, role="admin", is_active=True, id__ne=user_id)


async def get_user_by_username(session: AsyncSession, username: str) -> User | None:
    result = await session.execute(select(User).where(User.username_key == username.lower()))
    return result.scalar_one_or_none()


async def username_or_email_taken(session: AsyncSession, username: str | None, email: str | None) -> str | None:
    """Name the field that is already taken, if any."""
    if username and await crud_users.exists(session, username_key=username.lower()):
        return "username"
    if email and await crud_users.exists(session, email_key=email.lower()):
        return "email"
    return None
