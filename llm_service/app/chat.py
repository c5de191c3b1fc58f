"""Chat: sessions, a message and its reply, streamed or not (docs/api.md §7).

The user's message is stored before the provider is called, so a failed call loses nothing; the
reply can then be asked again (``retry``). A streamed reply that ends early (client gone, provider
stream cut) is stored as far as it got, marked ``incomplete``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from redis.exceptions import RedisError

from common.database import Database
from common.errors import AppError, BadRequest, NotFound, PayloadTooLarge, ServiceUnavailable
from common.llm_client import ChatStream, LLMClient, Usage, estimate_tokens
from llm_service.app.ask import Grounding, citations_of, ground
from llm_service.app.chat_store import ChatMessage, ChatSession, ChatStore
from llm_service.app.config import LLMSettings
from llm_service.app.context import build_context, records_block
from llm_service.app.prompts import PromptStore
from llm_service.app.records import owned_record_texts
from llm_service.app.retrieval import Retrieval, Source
from llm_service.app.schemas import ChatSessionCreate
from llm_service.app.sse import relay_deltas, sse_event
from llm_service.app.usage import record_usage

logger = logging.getLogger(__name__)

RECORDS_PROMPT = "chat_records"
DEFAULT_TITLE = "New chat"
TITLE_FROM_MESSAGE_CHARS = 60
USAGE_KIND = "chat"
REDIS_DOWN_DETAIL = "Redis became unreachable while storing the reply; it may be missing from the history"


@dataclass(slots=True)
class PreparedTurn:
    """A session whose last message awaits a reply, and the bounded context to send."""

    owner_id: str
    session: ChatSession
    context: list[dict[str, Any]]
    # With use_records: the sources retrieved for the message (the reply's citations come from them).
    sources: list[Source] | None = None

    def citations(self, content: str) -> list[dict[str, Any]] | None:
        return citations_of(content, self.sources) if self.sources is not None else None


class ChatService:
    def __init__(
        self,
        store: ChatStore,
        llm: LLMClient,
        db: Database,
        prompts: PromptStore,
        settings: LLMSettings,
        retrieval: Retrieval,
    ) -> None:
        self.store = store
        self.llm = llm
        self.db = db
        self.prompts = prompts
        self.settings = settings
        self.retrieval = retrieval

    # ------------------------------------------------------------------ sessions

    async def create_session(self, owner_id: str, data: ChatSessionCreate) -> ChatSession:
        if data.system_prompt and len(data.system_prompt) > self.settings.chat_system_prompt_max_chars:
            raise PayloadTooLarge(
                f"system_prompt is longer than {self.settings.chat_system_prompt_max_chars} characters"
            )
        if data.model:
            self.settings.check_model(data.model)
        return await self.store.create(
            owner_id,
            title=(data.title or "").strip() or DEFAULT_TITLE,
            model=data.model or self.llm.model,
            system_prompt=data.system_prompt or None,
            persistent=data.persistent,
        )

    # ------------------------------------------------------------------ turns

    async def post_message(
        self, owner_id: str, session_id: str, content: str, record_ids: Sequence[str], use_records: bool = False
    ) -> PreparedTurn:
        """Store the user's message (after checking it and its records) and build the context."""
        session = await self.store.get(owner_id, session_id)
        if len(content) > self.settings.chat_message_max_chars:
            raise PayloadTooLarge(f"content is longer than {self.settings.chat_message_max_chars} characters")
        await self.store.check_room(session.id, 2)  # the question and its reply
        records_text = await self._records_text(owner_id, record_ids)
        grounding = await self._ground(owner_id, content) if use_records else None
        if session.title == DEFAULT_TITLE:
            session.title = " ".join(content.split())[:TITLE_FROM_MESSAGE_CHARS] or DEFAULT_TITLE
        await self.store.append(session, ChatMessage(role="user", content=content))
        return await self._prepare(owner_id, session, records_text, grounding=grounding)

    async def prepare_retry(
        self, owner_id: str, session_id: str, record_ids: Sequence[str], use_records: bool = False
    ) -> PreparedTurn:
        """Ask again for the reply to the last user message (its reply failed or was cut)."""
        session = await self.store.get(owner_id, session_id)
        records_text = await self._records_text(owner_id, record_ids)
        history = await self.store.tail(session.id, self._context_window)
        last = history[-1] if history else None
        if last is None or (last.role == "assistant" and not last.incomplete):
            raise BadRequest("Nothing to retry: the last message already has a complete reply")
        await self.store.check_room(session.id, 1)
        question = next((m.content for m in reversed(history) if m.role == "user"), "")
        grounding = await self._ground(owner_id, question) if use_records and question else None
        return await self._prepare(owner_id, session, records_text, history, grounding=grounding)

    async def _ground(self, owner_id: str, question: str) -> Grounding:
        return await ground(
            self.retrieval,
            owner_id,
            question,
            self.settings.chat_use_records_limit,
            None,
            self.settings.ask_max_source_chars,
        )

    async def _records_text(self, owner_id: str, record_ids: Sequence[str]) -> str | None:
        if not record_ids:
            return None
        if len(record_ids) > self.settings.chat_max_record_ids:
            raise BadRequest(f"At most {self.settings.chat_max_record_ids} record_ids per message")
        async with self.db.session() as session:
            records = await owned_record_texts(session, owner_id, record_ids)
        if len(records) != len(record_ids):
            raise NotFound("Record not found")
        return records_block(self.prompts.get(RECORDS_PROMPT), records, self.settings.chat_record_context_chars)

    async def _prepare(
        self,
        owner_id: str,
        session: ChatSession,
        records_text: str | None,
        history: list[ChatMessage] | None = None,
        *,
        grounding: Grounding | None = None,
    ) -> PreparedTurn:
        if history is None:
            history = await self.store.tail(session.id, self._context_window)
        extra = [text for text in (records_text, grounding.system_prompt if grounding else None) if text]
        context = build_context(
            session.system_prompt or self.settings.chat_default_system_prompt,
            history,
            budget_tokens=self.settings.chat_context_budget_tokens,
            max_messages=self.settings.chat_context_max_messages,
            records_text="\n\n".join(extra) or None,
        )
        return PreparedTurn(owner_id, session, context, grounding.sources if grounding else None)

    @property
    def _context_window(self) -> int:
        """How many of the newest messages are read to build the context: the message cap, doubled
        so that replies left out (incomplete ones) do not shrink it."""
        return 2 * self.settings.chat_context_max_messages

    # ------------------------------------------------------------------ replies

    async def reply(self, turn: PreparedTurn) -> tuple[ChatMessage, Usage]:
        """One non-streamed reply, stored and accounted."""
        result = await self.llm.chat(turn.context, model=turn.session.model)
        message = await self.store.append(
            turn.session,
            ChatMessage(role="assistant", content=result.content, citations=turn.citations(result.content)),
        )
        usage = result.usage or self._estimate(turn, result.content)
        await record_usage(self.db, turn.owner_id, result.model, USAGE_KIND, usage)
        return message, usage

    async def open_reply_stream(self, turn: PreparedTurn) -> AsyncGenerator[str, None]:
        """Open the provider stream now (so an early failure is still a plain HTTP error) and return
        the SSE events: ``delta``..., then ``done`` or ``error``."""
        stream = await self.llm.open_chat_stream(turn.context, model=turn.session.model)
        return self._stream_events(turn, stream)

    async def _stream_events(self, turn: PreparedTurn, stream: ChatStream) -> AsyncGenerator[str, None]:
        parts: list[str] = []
        settled = False
        try:
            try:
                async for piece in relay_deltas(stream, parts):
                    if isinstance(piece, str):
                        yield piece
                        continue
                    content = "".join(parts)
                    citations = turn.citations(content)
                    with anyio.CancelScope(shield=True):
                        message = await self.store.append(
                            turn.session, ChatMessage(role="assistant", content=content, citations=citations)
                        )
                        await record_usage(
                            self.db,
                            turn.owner_id,
                            piece.model or stream.model,
                            USAGE_KIND,
                            piece.usage or self._estimate(turn, content),
                        )
                    settled = True
                    usage = piece.usage.as_dict() if piece.usage else None
                    done: dict[str, Any] = {"message_id": message.id, "usage": usage}
                    if citations is not None:
                        done["citations"] = citations
                    yield sse_event("done", done)
            except (AppError, RedisError) as exc:
                error = exc if isinstance(exc, AppError) else ServiceUnavailable(REDIS_DOWN_DETAIL)
                logger.warning("chat stream failed: %s", error.detail)
                with anyio.CancelScope(shield=True):
                    await self._store_partial(turn, stream, parts)
                settled = True
                yield sse_event("error", {"code": error.code, "detail": error.detail})
        finally:
            with anyio.CancelScope(shield=True):
                await stream.close()
                if not settled:  # the client went away mid-answer
                    await self._store_partial(turn, stream, parts)

    async def _store_partial(self, turn: PreparedTurn, stream: ChatStream, parts: list[str]) -> None:
        content = "".join(parts)
        try:
            if content:
                await self.store.append(turn.session, ChatMessage(role="assistant", content=content, incomplete=True))
            await record_usage(self.db, turn.owner_id, stream.model, USAGE_KIND, self._estimate(turn, content))
        except Exception:
            logger.exception("could not store the partial reply of session %s", turn.session.id)

    @staticmethod
    def _estimate(turn: PreparedTurn, content: str) -> Usage:
        prompt = sum(estimate_tokens(str(m.get("content", ""))) for m in turn.context)
        return Usage.estimate(prompt, estimate_tokens(content))
