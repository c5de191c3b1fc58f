"""Passwords, JWTs, revocation and the auth dependencies every service uses (docs/api.md §5).

The JWT library (python-jose) stays behind this module: ``encode_token``/``decode_token`` are the
only callers. Access tokens are verified locally; the only per-request I/O is one Redis round
trip (MGET) for the revoked ``jti`` and the user's "revoked before" time, batched with the other
requests in flight (``common.cache.coalesced_mget``).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal

import redis.asyncio as aioredis
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jose import ExpiredSignatureError, JWTError, jwt
from passlib.context import CryptContext

from common.app_state import redis_of, settings_of
from common.cache import coalesced_mget
from common.config import Settings
from common.errors import Forbidden, InvalidToken, NotAuthenticated, TokenExpired
from common.logging_setup import user_id_var

TokenType = Literal["access", "refresh"]

# argon2id for new hashes; bcrypt only so that older hashes still verify (and get upgraded).
# Cost: OWASP's argon2id profile (19 MiB, 2 passes, 1 lane). passlib's default (64 MiB, 3 passes,
# 4 lanes) took 0.3-0.4 s per login on a 2-core machine and 64 MiB per concurrent login.
ARGON2_MEMORY_KIB = 19_456
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1
pwd_context = CryptContext(
    schemes=["argon2", "bcrypt"],
    deprecated="auto",
    argon2__type="ID",
    argon2__memory_cost=ARGON2_MEMORY_KIB,
    argon2__time_cost=ARGON2_TIME_COST,
    argon2__parallelism=ARGON2_PARALLELISM,
)
DUMMY_PASSWORD = "dummy-password-for-timing"


@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """Verified when the user does not exist, so "no such user" costs as much as "wrong password".
    Made on first use (one argon2 hash, ~20-40 ms): services that never log anyone in skip it."""
    return pwd_context.hash(DUMMY_PASSWORD)


def __getattr__(name: str) -> str:
    # ``DUMMY_HASH`` stays importable as a module attribute, computed on first access.
    if name == "DUMMY_HASH":
        return dummy_hash()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Password hashing is CPU- and memory-bound: it runs in its own small pool (argon2-cffi releases
# the GIL), off the event loop and without filling the shared threadpool at a login burst. The
# pool is made on first use, not at import.
HASH_WORKERS = max(2, os.cpu_count() or 2)
_hash_pool: ThreadPoolExecutor | None = None
_hash_pool_lock = threading.Lock()


def hash_pool() -> ThreadPoolExecutor:
    """The password-hashing pool of this process, made on first use."""
    global _hash_pool
    if _hash_pool is None:
        with _hash_pool_lock:
            if _hash_pool is None:
                _hash_pool = ThreadPoolExecutor(max_workers=HASH_WORKERS, thread_name_prefix="password-hash")
    return _hash_pool


def hash_password(password: str) -> str:
    return pwd_context.hash(password)


async def hash_password_async(password: str) -> str:
    """``hash_password`` in the hashing pool."""
    return await asyncio.get_running_loop().run_in_executor(hash_pool(), hash_password, password)


async def verify_password_async(password: str, password_hash: str | None) -> tuple[bool, str | None]:
    """``verify_password`` in the hashing pool."""
    return await asyncio.get_running_loop().run_in_executor(hash_pool(), verify_password, password, password_hash)


def verify_password(password: str, password_hash: str | None) -> tuple[bool, str | None]:
    """Check a password; returns (ok, new_hash) where new_hash is set when the scheme is outdated."""
    if not password_hash:
        pwd_context.verify(password, dummy_hash())
        return False, None
    try:
        return pwd_context.verify_and_update(password, password_hash)
    except (ValueError, TypeError):
        return False, None


# ---------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class TokenClaims:
    sub: str
    role: str
    type: str
    jti: str
    iat: float
    exp: int


def encode_token(
    settings: Settings, user_id: str, role: str, token_type: TokenType, now: float | None = None
) -> tuple[str, TokenClaims]:
    now = time.time() if now is None else now
    lifetime = settings.access_token_minutes * 60 if token_type == "access" else settings.refresh_token_days * 86400
    claims = TokenClaims(
        sub=user_id,
        role=role,
        type=token_type,
        jti=uuid.uuid4().hex,
        iat=round(now, 3),
        exp=int(now + lifetime),
    )
    payload = {
        "sub": claims.sub,
        "role": claims.role,
        "type": claims.type,
        "jti": claims.jti,
        "iat": claims.iat,
        "exp": claims.exp,
    }
    return jwt.encode(payload, settings.secret_key, algorithm=settings.jwt_algorithm), claims


class VerifiedTokenCache:
    """Access tokens already verified in this process → their claims.

    A client sends the same access token for its whole 15-minute life; re-running python-jose on
    each request cost ~0.25-0.45 ms CPU (as much as the rest of a FastAPI request). The key is the
    exact token string plus the secret and algorithm that verified it, so a tampered token or a
    changed secret never hits. Expiry is checked on every hit; revocation is not cached (Redis is
    asked on every request). Bounded: the oldest entry goes first.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str, str], TokenClaims] = {}

    def get(self, settings: Settings, token: str) -> TokenClaims | None:
        key = (token, settings.secret_key, settings.jwt_algorithm)
        claims = self._entries.get(key)
        if claims is not None and claims.exp < time.time():
            self._entries.pop(key, None)
            raise TokenExpired.of(claims.type)
        return claims

    def put(self, settings: Settings, token: str, claims: TokenClaims) -> None:
        if self.max_entries <= 0:  # disabled
            return
        if len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)), None)
        self._entries[(token, settings.secret_key, settings.jwt_algorithm)] = claims

    def clear(self) -> None:
        self._entries.clear()


verified_access_tokens = VerifiedTokenCache()


def decode_access_token(settings: Settings, token: str) -> TokenClaims:
    """``decode_token(..., "access")`` with the per-process cache of verified tokens."""
    claims = verified_access_tokens.get(settings, token)
    if claims is None:
        claims = decode_token(settings, token, "access")
        verified_access_tokens.put(settings, token, claims)
    return claims


def decode_token(settings: Settings, token: str, expected_type: TokenType) -> TokenClaims:
    """Verify signature, expiry and type. The algorithm list is pinned: ``alg: none`` and
    algorithm-confusion tokens are refused. A well-signed token of the expected type past its
    ``exp`` is ``TokenExpired`` (``token_expired``); every other failure is ``InvalidToken``."""
    payload = _verified_payload(settings, token, expected_type)
    if payload.get("type") != expected_type:
        raise InvalidToken(f"Wrong token type: {expected_type} token required")
    try:
        return TokenClaims(
            sub=str(payload["sub"]),
            role=str(payload.get("role", "user")),
            type=str(payload["type"]),
            jti=str(payload["jti"]),
            iat=float(payload["iat"]),
            exp=int(payload["exp"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidToken("Invalid token claims") from exc


JWT_REQUIRED_CLAIMS = {"require_exp": True, "require_iat": True, "require_sub": True, "require_jti": True}


def _jwt_payload(settings: Settings, token: str, *, verify_exp: bool = True) -> dict[str, Any]:
    # python-jose turns "require_exp" into "verify_exp": both go off to read an expired token.
    options = (
        {**JWT_REQUIRED_CLAIMS} if verify_exp else {**JWT_REQUIRED_CLAIMS, "require_exp": False, "verify_exp": False}
    )
    return jwt.decode(token, settings.secret_key, algorithms=[settings.jwt_algorithm], options=options)


def _verified_payload(settings: Settings, token: str, expected_type: TokenType) -> dict[str, Any]:
    """The claims of a token whose signature and expiry hold. python-jose checks the signature
    before ``exp``, so only a token we signed can be called expired; one of the wrong type stays
    "wrong type" (a client would otherwise refresh because of a stale refresh token)."""
    try:
        return _jwt_payload(settings, token)
    except ExpiredSignatureError as exc:
        try:
            expired = _jwt_payload(settings, token, verify_exp=False)
        except Exception as inner:
            raise InvalidToken("Invalid token") from inner
        if expired.get("type") != expected_type:
            raise InvalidToken(f"Wrong token type: {expected_type} token required") from exc
        raise TokenExpired.of(expected_type) from exc
    except JWTError as exc:
        raise InvalidToken("Invalid token") from exc
    except Exception as exc:  # malformed input python-jose does not wrap
        raise InvalidToken("Invalid token") from exc


# ---------------------------------------------------------------- revocation (Redis)


def revoked_jti_key(jti: str) -> str:
    return f"auth:revoked:{jti}"


def revoked_before_key(user_id: str) -> str:
    return f"auth:revoked_before:{user_id}"


REVOKED = "1"  # logged out
ROTATED = "rotated"  # a refresh token traded for a new pair; presenting it again means it leaked
REVOKED_BEFORE = "before"  # issued before the user's "revoked before" time


def _ttl_until(exp: int) -> int:
    return max(1, int(exp - time.time()) + 1)


async def revoke_jti(redis: aioredis.Redis, jti: str, exp: int, marker: str = REVOKED) -> None:
    """Revoke one token until it would have expired anyway (an existing marker is kept, so a
    rotated refresh token that is later logged out still triggers reuse detection)."""
    await redis.set(revoked_jti_key(jti), marker, ex=_ttl_until(exp), nx=True)


async def mark_rotated(redis: aioredis.Redis, jti: str, exp: int) -> bool:
    """Mark a refresh token as used, atomically; False when it was already revoked or used
    (a concurrent refresh with the same token won the race)."""
    return bool(await redis.set(revoked_jti_key(jti), ROTATED, ex=_ttl_until(exp), nx=True))


async def revoke_user_tokens(redis: aioredis.Redis, settings: Settings, user_id: str) -> float:
    """Revoke every token of a user issued up to now (password change, deactivation, reuse)."""
    now = round(time.time(), 3)
    await redis.set(revoked_before_key(user_id), str(now), ex=settings.refresh_token_days * 86400 + 60)
    return now


async def revocation_state(redis: aioredis.Redis, claims: TokenClaims) -> tuple[str | None, bool]:
    """The token's own marker (``REVOKED``/``ROTATED`` or None) and whether the user's "revoked
    before" time covers it. One MGET, shared with the other requests in flight
    (``common.cache.coalesced_mget``)."""
    marker, before = await coalesced_mget(redis, revoked_jti_key(claims.jti), revoked_before_key(claims.sub))
    return (str(marker) if marker else None), (before is not None and claims.iat <= float(before))


async def revocation_reason(redis: aioredis.Redis, claims: TokenClaims) -> str | None:
    """Why a token no longer counts (``REVOKED``, ``ROTATED`` or ``REVOKED_BEFORE``), or None.
    One Redis round trip."""
    marker, covered = await revocation_state(redis, claims)
    if marker:
        return marker
    return REVOKED_BEFORE if covered else None


async def is_revoked(redis: aioredis.Redis, claims: TokenClaims) -> bool:
    return await revocation_reason(redis, claims) is not None


# ---------------------------------------------------------------- FastAPI dependencies

bearer_scheme = HTTPBearer(auto_error=False, description="Paste an access token from POST /api/v1/auth/login")


@dataclass(frozen=True, slots=True)
class TokenUser:
    """The caller, as its access token says."""

    id: str
    role: str
    jti: str
    exp: int
    token: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


async def verify_access_token(request: Request, token: str) -> TokenUser:
    claims = decode_access_token(settings_of(request), token)
    if await is_revoked(redis_of(request), claims):
        raise InvalidToken("Token has been revoked")
    user_id_var.set(claims.sub)
    return TokenUser(id=claims.sub, role=claims.role, jti=claims.jti, exp=claims.exp, token=token)


async def current_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> TokenUser:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise NotAuthenticated("Not authenticated: send 'Authorization: Bearer <access token>'")
    redis_of(request)  # a missing Redis is a 503 before any token work
    return await verify_access_token(request, credentials.credentials)


async def require_admin(user: Annotated[TokenUser, Depends(current_user)]) -> TokenUser:
    if not user.is_admin:
        raise Forbidden("Admin role required")
    return user


CurrentUser = Annotated[TokenUser, Depends(current_user)]
AdminUser = Annotated[TokenUser, Depends(require_admin)]
