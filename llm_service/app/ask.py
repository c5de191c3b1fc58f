"""Answers from the caller's own records (docs/api.md §15). The sources retrieved for the caller
are numbered ``[1]..[k]`` in the system prompt; the model is told to answer only from them and to
cite them. Only citations that the answer makes AND that name a retrieved source are returned, so
a model that invents ``[7]`` cites nothing. With nothing relevant retrieved, the model is not
called: the answer says so, with no citations."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from common.database import Database
from common.errors import AppError
from common.llm_client import LLMClient, Usage, estimate_tokens
from llm_service.app.retrieval import Retrieval, Source
from llm_service.app.sse import relay_deltas, sse_event
from llm_service.app.usage import record_usage

USAGE_KIND = "ask"
NOTHING_FOUND = "I found nothing in your records about this, so I cannot answer it from them."
INSTRUCTIONS = (
    "You answer the user's question using only the numbered sources below: they are the user's own "
    "records. Cite every source you use as [n] right after the sentence it supports. If the sources "
    "do not answer the question, say that you could not find it in the records and cite nothing. "
    "Do not use any other knowledge."
)
_CITATION = re.compile(r"\[(\d{1,3})\]")


def sources_prompt(sources: Sequence[Source], max_chars: int) -> str:
    """The system prompt: the instructions, then ``Sources:`` and one ``[n] title`` block each."""
    blocks = [
        f"[{n}] {' '.join(s.title.split()) or 'Untitled'}\n{s.text[:max_chars]}" for n, s in enumerate(sources, 1)
    ]
    return INSTRUCTIONS + "\n\nSources:\n" + "\n\n".join(blocks)


def citations_of(answer: str, sources: Sequence[Source]) -> list[dict[str, Any]]:
    """The sources the answer cites, in the order it first cites them; numbers it made up are dropped."""
    cited: list[dict[str, Any]] = []
    seen: set[int] = set()
    for match in _CITATION.finditer(answer):
        n = int(match.group(1))
        if 1 <= n <= len(sources) and n not in seen:
            seen.add(n)
            cited.append(source_view(n, sources[n - 1]))
    return cited


def source_view(n: int, source: Source) -> dict[str, Any]:
    return {"n": n, "record_id": source.record_id, "title": source.title, "snippet": source.snippet}


@dataclass(frozen=True, slots=True)
class Grounding:
    """What a grounded turn sends: the system prompt with the sources (None: nothing relevant)."""

    sources: list[Source]
    system_prompt: str | None


async def ground(
    retrieval: Retrieval, owner_id: str, question: str, limit: int, tag: str | None, max_chars: int
) -> Grounding:
    sources = await retrieval.search(owner_id, question, limit, tag)
    return Grounding(sources, sources_prompt(sources, max_chars) if sources else None)


class AskService:
    def __init__(self, retrieval: Retrieval, llm: LLMClient, db: Database, max_source_chars: int) -> None:
        self.retrieval = retrieval
        self.llm = llm
        self.db = db
        self.max_source_chars = max_source_chars

    async def prepare(
        self, owner_id: str, question: str, limit: int, tag: str | None
    ) -> tuple[Grounding, list[dict[str, Any]]]:
        grounding = await ground(self.retrieval, owner_id, question, limit, tag, self.max_source_chars)
        messages = (
            [{"role": "system", "content": grounding.system_prompt}, {"role": "user", "content": question}]
            if grounding.system_prompt
            else []
        )
        return grounding, messages

    async def answer(self, owner_id: str, question: str, limit: int, tag: str | None) -> dict[str, Any]:
        grounding, messages = await self.prepare(owner_id, question, limit, tag)
        if not messages:
            return {"answer": NOTHING_FOUND, "citations": [], "usage": Usage().as_dict()}
        result = await self.llm.chat(messages)
        usage = result.usage or _estimate(messages, result.content)
        await record_usage(self.db, owner_id, result.model, USAGE_KIND, usage)
        return {
            "answer": result.content,
            "citations": citations_of(result.content, grounding.sources),
            "usage": usage.as_dict(),
        }

    async def open_stream(self, owner_id: str, question: str, limit: int, tag: str | None) -> AsyncGenerator[str, None]:
        """Retrieve and open the provider stream now (an early failure is still a plain HTTP
        error); the events: ``citations`` (the retrieved sources), ``delta``..., ``done``/``error``."""
        grounding, messages = await self.prepare(owner_id, question, limit, tag)
        stream = await self.llm.open_chat_stream(messages) if messages else None
        return self._events(owner_id, grounding, messages, stream)

    async def _events(
        self, owner_id: str, grounding: Grounding, messages: list[dict[str, Any]], stream: Any
    ) -> AsyncGenerator[str, None]:
        yield sse_event("citations", {"sources": [source_view(n, s) for n, s in enumerate(grounding.sources, 1)]})
        if stream is None:
            yield sse_event("delta", {"content": NOTHING_FOUND})
            yield sse_event("done", {"citations": [], "usage": Usage().as_dict()})
            return
        parts: list[str] = []
        try:
            async for piece in relay_deltas(stream, parts):
                if isinstance(piece, str):
                    yield piece
                    continue
                answer = "".join(parts)
                usage = piece.usage or _estimate(messages, answer)
                with anyio.CancelScope(shield=True):
                    await record_usage(self.db, owner_id, piece.model or stream.model, USAGE_KIND, usage)
                yield sse_event(
                    "done", {"citations": citations_of(answer, grounding.sources), "usage": usage.as_dict()}
                )
        except AppError as exc:
            yield sse_event("error", {"code": exc.code, "detail": exc.detail})
        finally:
            with anyio.CancelScope(shield=True):
                await stream.close()


def _estimate(messages: list[dict[str, Any]], answer: str) -> Usage:
    return Usage.estimate(sum(estimate_tokens(str(m["content"])) for m in messages), estimate_tokens(answer))
