"""Server-side browser sessions in Redis (the backend-for-frontend of docs/api.md §10).

The browser holds only an opaque random id in an HttpOnly, SameSite=Lax cookie (Secure in
production); the tokens, the CSRF token and the user's name live in Redis under the SHA-256 of that
id, so a Redis dump gives no usable cookie. Signing in issues a new id (no session fixation).
A stored session with keys this version does not know (written by another deploy) still loads;
one that cannot be read at all counts as no session.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass, fields

import redis

from web_service.app.config import WebSettings
from web_service.app.user_api import TokenPair


@dataclass(slots=True)
class BrowserSession:
    id: str
    csrf_token: str
    user_id: str | None = None
    username: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    access_expires_at: float = 0.0

    @property
    def signed_in(self) -> bool:
        return bool(self.access_token and self.refresh_token)

    def csrf_matches(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(self.csrf_token, str(candidate))


SESSION_FIELDS = frozenset(f.name for f in fields(BrowserSession)) - {"id"}

# Delete the refresh lock only while it still holds our value: a lock that expired and was taken
# by another request is not ours to release.
_RELEASE_LOCK_IF_OURS = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def session_key(session_id: str) -> str:
    return "web:session:" + hashlib.sha256(session_id.encode()).hexdigest()


def refresh_lock_key(session_id: str) -> str:
    return session_key(session_id) + ":refresh-lock"


class SessionStore:
    """Create, read, update and drop browser sessions."""

    def __init__(self, client: redis.Redis, settings: WebSettings) -> None:
        self.redis = client
        self.settings = settings
        self._release_lock = client.register_script(_RELEASE_LOCK_IF_OURS)

    def load(self, session_id: str | None) -> BrowserSession | None:
        if not session_id or len(session_id) > 128:
            return None
        raw = self.redis.get(session_key(session_id))
        if not raw:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("csrf_token"), str):
            return None
        known = {key: value for key, value in data.items() if key in SESSION_FIELDS}
        if not isinstance(known.get("access_expires_at", 0.0), int | float):
            known["access_expires_at"] = 0.0  # unreadable expiry: refresh before the next use
        return BrowserSession(id=session_id, **known)

    def save(self, session: BrowserSession) -> None:
        data = asdict(session)
        data.pop("id")
        ttl = self.settings.session_ttl_seconds if session.signed_in else self.settings.anonymous_session_ttl_seconds
        self.redis.set(session_key(session.id), json.dumps(data), ex=ttl)

    def create_anonymous(self) -> BrowserSession:
        session = BrowserSession(id=secrets.token_urlsafe(32), csrf_token=secrets.token_urlsafe(32))
        self.save(session)
        return session

    def sign_in(self, previous: BrowserSession | None, tokens: TokenPair, user: dict[str, object]) -> BrowserSession:
        """A fresh session id and CSRF token for the signed-in user; the pre-login session is dropped."""
        if previous is not None:
            self.delete(previous.id)
        session = BrowserSession(
            id=secrets.token_urlsafe(32),
            csrf_token=secrets.token_urlsafe(32),
            user_id=str(user.get("id")),
            username=str(user.get("username")),
        )
        self.store_tokens(session, tokens)
        return session

    def store_tokens(self, session: BrowserSession, tokens: TokenPair) -> None:
        session.access_token = tokens.access_token
        session.refresh_token = tokens.refresh_token
        session.access_expires_at = time.time() + tokens.expires_in
        self.save(session)

    def delete(self, session_id: str) -> None:
        self.redis.delete(session_key(session_id), refresh_lock_key(session_id))

    def acquire_refresh_lock(self, session_id: str) -> str | None:
        """Take the session's refresh lock: its owner value, or None when another request holds it."""
        owner = secrets.token_urlsafe(16)
        taken = self.redis.set(refresh_lock_key(session_id), owner, nx=True, ex=self.settings.refresh_lock_seconds)
        return owner if taken else None

    def release_refresh_lock(self, session_id: str, owner: str) -> bool:
        """Release the lock if ``owner`` still holds it; True when it was released."""
        return bool(self._release_lock(keys=[refresh_lock_key(session_id)], args=[owner]))
