"""common.security: passwords, tokens with the pinned algorithm, and revocation in a real Redis."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from jose import jwt
from passlib.context import CryptContext

from common.cache import create_redis
from common.config import REPO_ROOT, Settings, load_settings
from common.errors import InvalidToken, TokenExpired
from common.security import (
    DUMMY_HASH,
    REVOKED,
    REVOKED_BEFORE,
    ROTATED,
    TokenClaims,
    VerifiedTokenCache,
    decode_access_token,
    decode_token,
    encode_token,
    hash_password,
    hash_password_async,
    is_revoked,
    mark_rotated,
    revocation_reason,
    revocation_state,
    revoke_jti,
    revoke_user_tokens,
    verified_access_tokens,
    verify_password,
    verify_password_async,
)

SECRET = "unit-test-secret-0123456789abcdef-0123456789"


@pytest.fixture
def settings() -> Settings:
    return load_settings(Settings, secret_key=SECRET)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = create_redis(redis_url)
    yield client
    await client.aclose()


# ---------------------------------------------------------------- passwords


def test_new_hashes_are_argon2id_and_verify() -> None:
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    assert verify_password("correct horse", hashed) == (True, None)
    assert verify_password("wrong horse", hashed) == (False, None)


def test_bcrypt_hashes_verify_and_ask_for_an_upgrade() -> None:
    legacy = CryptContext(schemes=["bcrypt"]).hash("correct horse")
    ok, new_hash = verify_password("correct horse", legacy)
    assert ok and new_hash is not None and new_hash.startswith("$argon2id$")
    assert verify_password("correct horse", new_hash) == (True, None)
    assert verify_password("wrong horse", legacy) == (False, None)


def test_bcrypt_refusing_long_passwords_is_a_plain_failure() -> None:
    legacy = CryptContext(schemes=["bcrypt"]).hash("correct horse")
    assert verify_password("x" * 100, legacy) == (False, None)


def test_missing_hash_runs_the_dummy_verification_and_fails() -> None:
    assert DUMMY_HASH.startswith("$argon2id$")
    assert verify_password("dummy-password-for-timing", None) == (False, None)
    assert verify_password("anything", "") == (False, None)
    assert verify_password("anything", "not a hash") == (False, None)


# ---------------------------------------------------------------- tokens


def test_token_round_trip_carries_the_spec_claims(settings: Settings) -> None:
    token, claims = encode_token(settings, "user-1", "admin", "access")
    payload = jwt.get_unverified_claims(token)
    assert set(payload) == {"sub", "role", "type", "jti", "iat", "exp"}
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    decoded = decode_token(settings, token, "access")
    assert decoded == claims and decoded.role == "admin"
    assert decoded.exp - int(decoded.iat) in (900, 899)


def test_lifetimes_follow_the_settings(settings: Settings) -> None:
    custom = settings.model_copy(update={"access_token_minutes": 1, "refresh_token_days": 2})
    _, access = encode_token(custom, "u", "user", "access", now=1000.0)
    _, refresh = encode_token(custom, "u", "user", "refresh", now=1000.0)
    assert access.exp == 1060 and refresh.exp == 1000 + 2 * 86400


def test_each_token_has_its_own_jti(settings: Settings) -> None:
    jtis = {encode_token(settings, "u", "user", "access")[1].jti for _ in range(20)}
    assert len(jtis) == 20


def test_wrong_type_is_refused(settings: Settings) -> None:
    refresh, _ = encode_token(settings, "u", "user", "refresh")
    access, _ = encode_token(settings, "u", "user", "access")
    with pytest.raises(InvalidToken, match="access token required"):
        decode_token(settings, refresh, "access")
    with pytest.raises(InvalidToken, match="refresh token required"):
        decode_token(settings, access, "refresh")


def test_expired_token_is_refused(settings: Settings) -> None:
    token, _ = encode_token(settings, "u", "user", "access", now=time.time() - 3600)
    with pytest.raises(InvalidToken):
        decode_token(settings, token, "access")


def test_an_expired_token_is_token_expired_with_the_rfc_6750_challenge(settings: Settings) -> None:
    access, _ = encode_token(settings, "u", "user", "access", now=time.time() - 3600)
    with pytest.raises(TokenExpired) as expired:
        decode_token(settings, access, "access")
    assert expired.value.code == "token_expired" and expired.value.status_code == 401
    assert expired.value.headers["WWW-Authenticate"] == (
        'Bearer error="invalid_token", error_description="The access token expired"'
    )
    refresh, _ = encode_token(settings, "u", "user", "refresh", now=time.time() - 30 * 86400)
    with pytest.raises(TokenExpired) as stale_refresh:
        decode_token(settings, refresh, "refresh")
    assert 'error_description="The refresh token expired"' in stale_refresh.value.headers["WWW-Authenticate"]


def test_only_a_well_signed_token_of_the_right_type_is_called_expired(settings: Settings) -> None:
    expired_access, _ = encode_token(settings, "u", "user", "access", now=time.time() - 3600)
    head, payload, signature = expired_access.split(".")
    other = settings.model_copy(update={"secret_key": "another-secret-0123456789abcdef-0123456789"})
    expired_elsewhere, _ = encode_token(other, "u", "user", "access", now=time.time() - 3600)
    expired_refresh, _ = encode_token(settings, "u", "user", "refresh", now=time.time() - 30 * 86400)
    for token, expected in (
        (f"{head}.{payload}.{signature[::-1]}", "access"),  # forged: its exp says nothing
        (expired_elsewhere, "access"),
        (expired_refresh, "access"),  # a stale refresh token sent as the access token
        (expired_access, "refresh"),
    ):
        with pytest.raises(InvalidToken) as refused:
            decode_token(settings, token, expected)  # type: ignore[arg-type]
        assert refused.value.code == "invalid_token", (token, expected)
        assert refused.value.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def _segment(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_the_algorithm_is_pinned(settings: Settings) -> None:
    token, _ = encode_token(settings, "u", "user", "access")
    _, payload, _ = token.split(".")
    # alg: none, unsigned
    with pytest.raises(InvalidToken):
        decode_token(settings, f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{payload}.", "access")
    # the same secret under another HMAC algorithm
    other_alg = settings.model_copy(update={"jwt_algorithm": "HS512"})
    with pytest.raises(InvalidToken):
        decode_token(settings, encode_token(other_alg, "u", "user", "access")[0], "access")
    # and the pinned list follows the setting, not the token
    assert decode_token(other_alg, encode_token(other_alg, "u", "user", "access")[0], "access").sub == "u"


@pytest.mark.parametrize("missing", ["sub", "jti", "iat", "exp"])
def test_tokens_missing_a_required_claim_are_refused(settings: Settings, missing: str) -> None:
    now = int(time.time())
    claims = {"sub": "u", "role": "user", "type": "access", "jti": uuid.uuid4().hex, "iat": now, "exp": now + 60}
    del claims[missing]
    token = jwt.encode(claims, settings.secret_key, algorithm="HS256")
    with pytest.raises(InvalidToken):
        decode_token(settings, token, "access")


@pytest.mark.parametrize("token", ["", "a", "a.b", "a.b.c", "....", "é.é.é", "eyJ" * 100])
def test_garbage_is_invalid_token_not_a_crash(settings: Settings, token: str) -> None:
    with pytest.raises(InvalidToken):
        decode_token(settings, token, "access")


def test_a_token_from_another_secret_is_refused(settings: Settings) -> None:
    other = settings.model_copy(update={"secret_key": "x" * 48})
    with pytest.raises(InvalidToken):
        decode_token(settings, encode_token(other, "u", "user", "access")[0], "access")


# ---------------------------------------------------------------- revocation


async def test_revoking_one_jti_revokes_only_that_token(settings: Settings, redis: aioredis.Redis) -> None:
    user = str(uuid.uuid4())
    _, first = encode_token(settings, user, "user", "access")
    _, second = encode_token(settings, user, "user", "access")
    await revoke_jti(redis, first.jti, first.exp)
    assert await revocation_reason(redis, first) == REVOKED
    assert not await is_revoked(redis, second)
    ttl = await redis.ttl(f"auth:revoked:{first.jti}")
    assert 0 < ttl <= settings.access_token_minutes * 60 + 1  # kept only while the token could be used


async def test_revoked_before_covers_earlier_tokens_only(settings: Settings, redis: aioredis.Redis) -> None:
    user = str(uuid.uuid4())
    _, old = encode_token(settings, user, "user", "access", now=time.time() - 5)
    cutoff = await revoke_user_tokens(redis, settings, user)
    _, new = encode_token(settings, user, "user", "access", now=cutoff + 0.01)
    _, other_user = encode_token(settings, str(uuid.uuid4()), "user", "access", now=time.time() - 5)
    assert await revocation_reason(redis, old) == REVOKED_BEFORE
    assert not await is_revoked(redis, new)
    assert not await is_revoked(redis, other_user)


async def test_mark_rotated_succeeds_once(settings: Settings, redis: aioredis.Redis) -> None:
    _, refresh = encode_token(settings, str(uuid.uuid4()), "user", "refresh")
    assert await mark_rotated(redis, refresh.jti, refresh.exp) is True
    assert await mark_rotated(redis, refresh.jti, refresh.exp) is False
    assert await revocation_reason(redis, refresh) == ROTATED
    # A later logout keeps the "rotated" marker, so reuse detection still fires.
    await revoke_jti(redis, refresh.jti, refresh.exp)
    assert await revocation_reason(redis, refresh) == ROTATED


# ---------------------------------------------------------------- verified-token cache and hashing pool


def test_cached_access_tokens_still_expire(settings: Settings) -> None:
    cache = VerifiedTokenCache()
    token, claims = encode_token(settings, "u", "user", "access", now=time.time() - 899)  # 1 s left
    cache.put(settings, token, claims)
    assert cache.get(settings, token) == claims
    stale = TokenClaims(sub="u", role="user", type="access", jti="j", iat=1.0, exp=int(time.time()) - 1)
    cache.put(settings, "stale-token", stale)
    with pytest.raises(TokenExpired):
        cache.get(settings, "stale-token")
    assert cache.get(settings, "stale-token") is None  # evicted


def test_cache_hits_only_for_the_same_token_and_secret(settings: Settings) -> None:
    verified_access_tokens.clear()
    token, claims = encode_token(settings, "u", "user", "access")
    assert decode_access_token(settings, token) == claims
    assert verified_access_tokens.get(settings, token) == claims
    other_secret = settings.model_copy(update={"secret_key": "y" * 48})
    assert verified_access_tokens.get(other_secret, token) is None
    with pytest.raises(InvalidToken):
        decode_access_token(other_secret, token)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(InvalidToken):
        decode_access_token(settings, tampered)
    refresh, _ = encode_token(settings, "u", "user", "refresh")
    with pytest.raises(InvalidToken):
        decode_access_token(settings, refresh)


def test_cache_is_bounded(settings: Settings) -> None:
    cache = VerifiedTokenCache(max_entries=3)
    tokens = [encode_token(settings, f"u{n}", "user", "access") for n in range(5)]
    for token, claims in tokens:
        cache.put(settings, token, claims)
    assert cache.get(settings, tokens[0][0]) is None and cache.get(settings, tokens[4][0]) == tokens[4][1]
    disabled = VerifiedTokenCache(max_entries=0)
    disabled.put(settings, *tokens[0])
    assert disabled.get(settings, tokens[0][0]) is None


async def test_async_hashing_runs_in_the_hashing_pool() -> None:
    hashed = await hash_password_async("correct horse")
    assert await verify_password_async("correct horse", hashed) == (True, None)
    assert await verify_password_async("wrong", None) == (False, None)


async def test_revocation_state_reports_the_marker_and_the_cutoff_separately(
    settings: Settings, redis: aioredis.Redis
) -> None:
    user = str(uuid.uuid4())
    _, refresh = encode_token(settings, user, "user", "refresh", now=time.time() - 5)
    assert await revocation_state(redis, refresh) == (None, False)
    await revoke_jti(redis, refresh.jti, refresh.exp)
    assert await revocation_state(redis, refresh) == (REVOKED, False)
    await revoke_user_tokens(redis, settings, user)
    assert await revocation_state(redis, refresh) == (REVOKED, True)
    assert await revocation_reason(redis, refresh) == REVOKED  # the marker is named first


# ---------------------------------------------------------------- nothing costly at import


LAZY_PROBE = """
import asyncio, threading
import common.app_factory, common.deps
import common.security as s
assert s.dummy_hash.cache_info().currsize == 0, "dummy hash computed at import"
assert s._hash_pool is None, "hashing pool made at import"
print("import ok")
assert s.verify_password("guess", None) == (False, None)
assert s.dummy_hash.cache_info().currsize == 1 and s.DUMMY_HASH.startswith("$argon2id$")
print(asyncio.run(s.verify_password_async("guess", s.hash_password("guess")))[0])
assert s.hash_pool() is s.hash_pool()
assert any(t.name.startswith("password-hash") for t in threading.enumerate())
print("first use ok")
"""


def test_importing_security_neither_hashes_nor_starts_a_pool() -> None:
    result = subprocess.run(
        [sys.executable, "-c", LAZY_PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["import", "ok", "True", "first", "use", "ok"]
