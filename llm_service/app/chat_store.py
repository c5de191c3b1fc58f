"""Chat sessions in Redis: the one place that knows the keys (docs/api.md §7).

Per session: a hash ``chat:session:{id}`` (owner, title, model, system prompt, persistent flag,
timestamps) and a list ``chat:messages:{id}`` of JSON messages. Per user: a sorted set
``chat:user:{owner}:sessions`` of session ids scored by their last activity (newest first).

Activity (create, rename, a message) refreshes every key of the session to ``CHAT_TTL_SECONDS``;
a persistent session has no expiry. The per-user index lives as long as its longest-lived session:
it is persisted while the user has a persistent session and otherwise expires with the last
activity. Reads are not activity. Another user's session id reads as missing (404).

Bounds: a session holds at most ``CHAT_MAX_MESSAGES_PER_SESSION`` messages and a user at most
``CHAT_MAX_SESSIONS_PER_USER`` sessions (409 beyond, checked before writing, so concurrent requests
may pass a bound by a few). Hence the per-user index stays small and every scan of it is bounded.
Messages are read as pages or as the tail (``LRANGE -N -1``), never the whole list.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import redis.asyncio as aioredis

from common.errors import Conflict, NotFound

MAX_ID_LENGTH = 64
# Pages bigger than this (in characters of JSON) are parsed in a worker thread, off the event loop.
PARSE_IN_THREAD_CHARS = 256 * 1024


def chat_session_key(session_id: str) -> str:
    return f"chat:session:{session_id}"


def chat_messages_key(session_id: str) -> str:
    return f"chat:messages:{session_id}"


def chat_index_key(owner_id: str) -> str:
    return f"chat:user:{owner_id}:sessions"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class ChatSession:
    id: str
    owner_id: str
    title: str
    model: str
    system_prompt: str | None
    persistent: bool
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None

    def to_hash(self) -> dict[str, str]:
        return {
            "id": self.id,
            "owner_id": self.owner_id,
            "title": self.title,
            "model": self.model,
            "system_prompt": self.system_prompt or "",
            "persistent": "1" if self.persistent else "0",
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }

    @classmethod
    def from_hash(cls, data: dict[str, str], pttl_ms: int) -> ChatSession:
        persistent = data.get("persistent") == "1"
        expires_at = None if persistent or pttl_ms < 0 else _now() + timedelta(milliseconds=pttl_ms)
        return cls(
            id=data["id"],
            owner_id=data["owner_id"],
            title=data.get("title", ""),
            model=data.get("model", ""),
            system_prompt=data.get("system_prompt") or None,
            persistent=persistent,
            created_at=datetime.fromisoformat(data["created_at"]),
            updated_at=datetime.fromisoformat(data["updated_at"]),
            expires_at=expires_at,
        )


@dataclass(slots=True)
class ChatMessage:
    role: str
    content: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: datetime = field(default_factory=_now)
    incomplete: bool = False
    # The caller's records an answer grounded on them cites (``use_records``); None otherwise.
    citations: list[dict[str, Any]] | None = None

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "id": self.id,
            "role": self.role,
            "content": self.content,
            "created_at": self.created_at.isoformat(),
            "incomplete": self.incomplete,
        }
        if self.citations is not None:
            data["citations"] = self.citations
        return json.dumps(data)

    @classmethod
    def from_json(cls, raw: str) -> ChatMessage:
        data: dict[str, Any] = json.loads(raw)
        return cls(
            role=data["role"],
            content=data["content"],
            id=data["id"],
            created_at=datetime.fromisoformat(data["created_at"]),
            incomplete=bool(data.get("incomplete")),
            citations=data.get("citations"),
        )


def _parse_all(raw: list[str]) -> list[ChatMessage]:
    return [ChatMessage.from_json(item) for item in raw]


async def _parse_messages(raw: list[str]) -> list[ChatMessage]:
    """Parse stored messages; a large batch in a worker thread so other requests keep being served."""
    if sum(len(item) for item in raw) > PARSE_IN_THREAD_CHARS:
        return await anyio.to_thread.run_sync(_parse_all, raw)
    return _parse_all(raw)


class ChatStore:
    """Chat sessions of every user in one Redis; every method is scoped to ``owner_id``."""

    def __init__(
        self, redis: aioredis.Redis, ttl_seconds: int, *, max_sessions: int = 200, max_messages: int = 1000
    ) -> None:
        self.redis = redis
        self.ttl = ttl_seconds
        self.max_sessions = max_sessions
        self.max_messages = max_messages

    # ------------------------------------------------------------------ sessions

    async def create(
        self, owner_id: str, *, title: str, model: str, system_prompt: str | None, persistent: bool
    ) -> ChatSession:
        await self._check_session_room(owner_id)
        now = _now()
        session = ChatSession(str(uuid.uuid4()), owner_id, title, model, system_prompt, persistent, now, now)
        await self._touch(session)
        return session

    async def get(self, owner_id: str, session_id: str) -> ChatSession:
        """The caller's live session; 404 when it is missing, expired or someone else's."""
        if not session_id or len(session_id) > MAX_ID_LENGTH:
            raise NotFound("Chat session not found")
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(chat_session_key(session_id))
            pipe.pttl(chat_session_key(session_id))
            data, pttl = await pipe.execute()
        if not data or data.get("owner_id") != owner_id:
            raise NotFound("Chat session not found")
        return ChatSession.from_hash(data, int(pttl))

    async def list(self, owner_id: str, limit: int) -> list[ChatSession]:
        """The caller's live sessions, most recent activity first; expired ids are pruned."""
        ids: list[str] = await self.redis.zrevrange(chat_index_key(owner_id), 0, limit - 1)
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for session_id in ids:
                pipe.hgetall(chat_session_key(session_id))
                pipe.pttl(chat_session_key(session_id))
            replies = await pipe.execute()
        sessions, gone = [], []
        for session_id, data, pttl in zip(ids, replies[::2], replies[1::2], strict=True):
            if data and data.get("owner_id") == owner_id:
                sessions.append(ChatSession.from_hash(data, int(pttl)))
            else:
                gone.append(session_id)
        if gone:
            await self.redis.zrem(chat_index_key(owner_id), *gone)
        return sessions

    async def update(
        self, owner_id: str, session_id: str, *, title: str | None = None, persistent: bool | None = None
    ) -> ChatSession:
        session = await self.get(owner_id, session_id)
        if title is not None:
            session.title = title
        was_persistent = session.persistent
        if persistent is not None:
            session.persistent = persistent
        await self._touch(session)
        if was_persistent and not session.persistent:
            await self._refresh_index_expiry(owner_id)
        return session

    async def delete(self, owner_id: str, session_id: str) -> None:
        await self.get(owner_id, session_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(chat_session_key(session_id), chat_messages_key(session_id))
            pipe.zrem(chat_index_key(owner_id), session_id)
            await pipe.execute()
        await self._refresh_index_expiry(owner_id)

    async def _check_session_room(self, owner_id: str) -> None:
        """409 when the user already has ``max_sessions`` live sessions (expired ids are pruned first)."""
        index_key = chat_index_key(owner_id)
        if await self.redis.zcard(index_key) < self.max_sessions:
            return
        await self._prune_index(owner_id)
        if await self.redis.zcard(index_key) >= self.max_sessions:
            raise Conflict(
                f"You already have {self.max_sessions} chat sessions (CHAT_MAX_SESSIONS_PER_USER); "
                "delete one before creating another"
            )

    async def _prune_index(self, owner_id: str) -> list[str | None]:
        """Drop the ids of expired sessions from the index; the ``persistent`` flags of those left.

        The index holds at most about ``max_sessions`` ids (creation checks it), so this is bounded."""
        index_key = chat_index_key(owner_id)
        ids: list[str] = await self.redis.zrange(index_key, 0, -1)
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for session_id in ids:
                pipe.hget(chat_session_key(session_id), "persistent")
            flags: list[str | None] = await pipe.execute()
        gone = [sid for sid, flag in zip(ids, flags, strict=True) if flag is None]
        if gone:
            await self.redis.zrem(index_key, *gone)
        return [flag for flag in flags if flag is not None]

    # ------------------------------------------------------------------ messages

    async def count(self, session_id: str) -> int:
        return int(await self.redis.llen(chat_messages_key(session_id)))

    async def check_room(self, session_id: str, needed: int) -> None:
        """409 when ``needed`` more messages would not fit under ``max_messages``."""
        if await self.count(session_id) + needed > self.max_messages:
            raise Conflict(
                f"This chat session is full ({self.max_messages} messages, CHAT_MAX_MESSAGES_PER_SESSION); "
                "start a new session"
            )

    async def tail(self, session_id: str, n: int) -> list[ChatMessage]:
        """The newest ``n`` messages, oldest first (``LRANGE -n -1``: never the whole history)."""
        if n <= 0:
            return []
        raw: list[str] = await self.redis.lrange(chat_messages_key(session_id), -n, -1)
        return await _parse_messages(raw)

    async def page(self, session_id: str, *, before: int | None, limit: int) -> tuple[list[ChatMessage], int, int]:
        """Messages with an index below ``before`` (default: the end), at most ``limit``, oldest first.

        Returns ``(messages, index of the first one, total count)``. Indexes are positions in the
        history (0 = first message); messages are never removed one by one, so they are stable."""
        key = chat_messages_key(session_id)
        total = int(await self.redis.llen(key))
        end = total if before is None else max(0, min(before, total))
        start = max(0, end - limit)
        if end <= start:
            return [], start, total
        raw: list[str] = await self.redis.lrange(key, start, end - 1)
        return await _parse_messages(raw), start, total

    async def append(self, session: ChatSession, message: ChatMessage) -> ChatMessage:
        """Store a message at the end of the history; counts as activity on the session."""
        await self._touch(session, message)
        return message

    # ------------------------------------------------------------------ expiry

    async def _touch(self, session: ChatSession, message: ChatMessage | None = None) -> None:
        """Write the session (and a message), move it to the top of the index, refresh expiries.

        The whole hash is written, so a session that expired a moment ago comes back whole."""
        session.updated_at = _now()
        session.expires_at = None if session.persistent else session.updated_at + timedelta(seconds=self.ttl)
        session_key, messages_key = chat_session_key(session.id), chat_messages_key(session.id)
        index_key = chat_index_key(session.owner_id)
        index_ttl = await self.redis.ttl(index_key)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(session_key, mapping=session.to_hash())
            if message is not None:
                pipe.rpush(messages_key, message.to_json())
            pipe.zadd(index_key, {session.id: session.updated_at.timestamp()})
            if session.persistent:
                pipe.persist(session_key)
                pipe.persist(messages_key)
                pipe.persist(index_key)
            else:
                pipe.expire(session_key, self.ttl)
                pipe.expire(messages_key, self.ttl)
                # An index without expiry (-1) is held by a persistent session of this user.
                if index_ttl != -1:
                    pipe.expire(index_key, self.ttl)
            await pipe.execute()

    async def _refresh_index_expiry(self, owner_id: str) -> None:
        """Recompute the index's expiry after a session stopped being persistent or was deleted.

        Bounded: the index holds at most about ``max_sessions`` ids."""
        index_key = chat_index_key(owner_id)
        flags = await self._prune_index(owner_id)
        if not flags:
            return
        if "1" in flags:
            await self.redis.persist(index_key)
        else:
            await self.redis.expire(index_key, self.ttl)
