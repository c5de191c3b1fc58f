"""Account logic: registration, login, token issue/rotation/revocation, profile and admin changes.

Routes validate and call these; these raise typed errors from ``common.errors``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import redis.asyncio as aioredis
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common import rate_limit
from common.config import Settings
from common.database import Database, end_read
from common.errors import BadRequest, Conflict, InvalidToken, NotAuthenticated, NotFound, RateLimited
from common.models.user import ROLE_ADMIN, ROLE_USER, User
from common.security import (
    TokenUser,
    decode_token,
    encode_token,
    hash_password_async,
    mark_rotated,
    revocation_state,
    revoke_jti,
    revoke_user_tokens,
    verify_password_async,
)
from user_service.app import crud
from user_service.app.schemas import TokenPair, UserAdminUpdate, UserCreate, UserRead, UserUpdateMe

logger = logging.getLogger(__name__)
INVALID_CREDENTIALS = "Incorrect username or password"
RESERVED_USERNAMES = frozenset(
    json.loads((Path(__file__).resolve().parent.parent / "res" / "reserved_usernames.json").read_text())
)


async def register_user(session: AsyncSession, data: UserCreate) -> User:
    """Self-service sign-up: reserved names are refused (the admin CLI may still use them)."""
    if data.username.lower() in RESERVED_USERNAMES:
        raise Conflict("That username is reserved")
    return await create_user(session, data)


async def create_user(session: AsyncSession, data: UserCreate, role: str = ROLE_USER) -> User:
    taken = await crud.username_or_email_taken(session, data.username, data.email)
    if taken:
        raise Conflict(f"That {taken} is already registered")
    await end_read(session)
    password_hash = await hash_password_async(data.password)
    user = User(
        username=data.username,
        username_key=data.username.lower(),
        email=data.email,
        email_key=data.email.lower() if data.email else None,
        display_name=data.display_name,
        password_hash=password_hash,
        role=role,
        is_active=True,
    )
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as exc:  # lost a race with a concurrent registration
        await session.rollback()
        raise Conflict("That username or email is already registered") from exc
    return user


def login_limit_key(username: str, client: str) -> str:
    return f"auth:login_attempts:{username.lower()}:{client}"


async def authenticate(
    session: AsyncSession, redis: aioredis.Redis, settings: Settings, username: str, password: str, client: str
) -> User:
    """Check credentials with a per-(username, client) attempt limit; one answer for every failure.

    The attempt is counted atomically BEFORE the password is verified, so concurrent attempts
    cannot all pass a check made while the others are still hashing: at most
    ``login_max_failures`` passwords are verified per window. A successful login clears the count.
    """
    key = login_limit_key(username, client)
    attempt = await rate_limit.hit(redis, key, settings.login_failure_window_seconds)
    if attempt.count > settings.login_max_failures:
        raise RateLimited(attempt.retry_after, "Too many failed logins; try again later")
    user = await crud.get_user_by_username(session, username)
    await end_read(session)
    ok, new_hash = await verify_password_async(password, user.password_hash if user else None)
    if user is None or not ok:
        raise NotAuthenticated(INVALID_CREDENTIALS)
    if not user.is_active:
        # The same answer as a wrong password: a 403 here would confirm the password.
        logger.info("login refused for deactivated user %s", user.id)
        raise NotAuthenticated(INVALID_CREDENTIALS)
    await redis.delete(key)
    if new_hash:  # outdated scheme (e.g. bcrypt): upgrade to argon2id now that we know the password
        user.password_hash = new_hash
        await session.commit()
        logger.info("password hash upgraded for user %s", user.id)
    return user


def issue_tokens(settings: Settings, user: User) -> TokenPair:
    access, _ = encode_token(settings, user.id, user.role, "access")
    refresh, _ = encode_token(settings, user.id, user.role, "refresh")
    return TokenPair(access_token=access, refresh_token=refresh, expires_in=settings.access_token_minutes * 60)


async def rotate_refresh_token(
    session: AsyncSession, redis: aioredis.Redis, settings: Settings, refresh_token: str
) -> TokenPair:
    """Trade a refresh token for a new pair (rotation).

    docs/api.md §5: reusing a revoked refresh token — one already traded, or logged out — revokes every
    token of its user (it may have leaked). A token already covered by the user's "revoked before"
    time (password change, deactivation, an earlier reuse) only gets a 401: everything issued up
    to then is dead already, and revoking again would sign out the sessions made since."""
    claims = decode_token(settings, refresh_token, "refresh")
    marker, covered = await revocation_state(redis, claims)
    if covered:
        raise InvalidToken("Refresh token has been revoked")
    if marker is not None or not await mark_rotated(redis, claims.jti, claims.exp):
        # Spent or logged out before, or being traded right now by a concurrent request.
        await revoke_user_tokens(redis, settings, claims.sub)
        logger.warning(
            "reuse of a revoked refresh token (%s) for user %s; all tokens revoked",
            marker or "concurrent use",
            claims.sub,
        )
        raise InvalidToken("Refresh token was already used or revoked; please sign in again")
    user = await crud.get_user(session, claims.sub)
    if user is None or not user.is_active:
        raise InvalidToken("Account no longer active")
    return issue_tokens(settings, user)


async def logout(redis: aioredis.Redis, settings: Settings, caller: TokenUser, refresh_token: str | None) -> None:
    await revoke_jti(redis, caller.jti, caller.exp)
    if refresh_token:
        try:
            claims = decode_token(settings, refresh_token, "refresh")
        except InvalidToken:
            return  # nothing valid to revoke; logging out still succeeds
        if claims.sub == caller.id:
            await revoke_jti(redis, claims.jti, claims.exp)


async def read_active_user(db: Database, user_id: str) -> UserRead:
    """The caller's account as its response model, for reads (no session)."""
    row = await crud.get_public_user_quick(db, user_id)
    if row is None or not row["is_active"]:
        raise InvalidToken("Account no longer active")
    return UserRead.model_validate(row)


async def load_active_user(session: AsyncSession, user_id: str) -> User:
    user = await crud.get_user(session, user_id)
    if user is None or not user.is_active:
        raise InvalidToken("Account no longer active")
    return user


async def update_me(session: AsyncSession, user: User, data: UserUpdateMe) -> User:
    fields = data.model_dump(exclude_unset=True)
    new_email = fields.get("email")
    if (
        new_email
        and new_email.lower() != (user.email_key or "")
        and await crud.username_or_email_taken(session, None, new_email)
    ):
        raise Conflict("That email is already registered")
    if "email" in fields:
        user.email = fields["email"]
        user.email_key = fields["email"].lower() if fields["email"] else None
    if "display_name" in fields:
        user.display_name = fields["display_name"]
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict("That email is already registered") from exc
    return user


async def change_password(
    session: AsyncSession, redis: aioredis.Redis, settings: Settings, user: User, old: str, new: str
) -> None:
    await end_read(session)
    ok, _ = await verify_password_async(old, user.password_hash)
    if not ok:
        raise BadRequest("The old password is not correct")
    user.password_hash = await hash_password_async(new)
    await session.commit()
    await revoke_user_tokens(redis, settings, user.id)


async def admin_update(
    session: AsyncSession, redis: aioredis.Redis, settings: Settings, user_id: str, data: UserAdminUpdate
) -> User:
    user = await crud.get_user(session, user_id)
    if user is None:
        raise NotFound("No such user")
    fields = data.model_dump(exclude_unset=True, exclude_none=True)
    changed_access = ("role" in fields and fields["role"] != user.role) or (
        "is_active" in fields and fields["is_active"] is False and user.is_active
    )
    leaves_admin_role = user.role == ROLE_ADMIN and user.is_active and changed_access
    if leaves_admin_role and await crud.other_active_admins(session, user.id) == 0:
        raise Conflict("This is the last active admin: make another user admin first")
    for name, value in fields.items():
        setattr(user, name, value)
    await session.commit()
    if changed_access:  # deactivation or a role change: earlier tokens no longer speak for this user
        await revoke_user_tokens(redis, settings, user.id)
    return user


async def ensure_admin(session: AsyncSession, username: str, password: str) -> User | None:
    """Create the first admin if that username is free (start-up and the CLI)."""
    existing = await crud.get_user_by_username(session, username)
    if existing is not None:
        if existing.role != ROLE_ADMIN:
            logger.warning("ADMIN_USERNAME %s exists as a normal user; not promoting it", username)
        return None
    try:
        return await create_user(session, UserCreate(username=username, password=password), role=ROLE_ADMIN)
    except Conflict:  # another replica created it first
        return None
