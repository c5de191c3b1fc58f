"""Retrieval from the caller's own records (docs/api.md §15): the query embedded through the
provider (accounted to the caller), the nearest chunks among the caller's vectors only
(``common.record_index.vectors``), and the live records they belong to."""

from __future__ import annotations

from dataclasses import dataclass

from common.database import Database
from common.llm_client import LLMClient
from common.record_index import store
from common.record_index.vectors import VectorIndex
from llm_service.app.config import LLMSettings
from llm_service.app.embeddings import USAGE_KIND, estimated_usage
from llm_service.app.usage import record_usage

SNIPPET_CHARS = 240


@dataclass(frozen=True, slots=True)
class Source:
    record_id: str
    title: str
    score: float
    snippet: str
    text: str  # the whole matching chunk (what /ask shows the model)


def snippet_of(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1].rstrip() + "…"


class Retrieval:
    def __init__(self, db: Database, llm: LLMClient, settings: LLMSettings, vectors: VectorIndex) -> None:
        self.db = db
        self.llm = llm
        self.settings = settings
        self.vectors = vectors
        self.model = settings.llm_embedding_model

    async def embed_query(self, owner_id: str, query: str) -> list[float]:
        result = await self.llm.embed([query], model=self.model)
        await record_usage(self.db, owner_id, self.model, USAGE_KIND, result.usage or estimated_usage([query]))
        return result.vectors[0]

    async def search(self, owner_id: str, query: str, limit: int, tag: str | None = None) -> list[Source]:
        """The caller's records nearest to ``query`` (at least ``INDEX_MIN_SCORE``), best first."""
        vector = await self.embed_query(owner_id, query)
        wanted = limit if tag is None else self.settings.index_search_limit
        async with self.db.session() as session:
            hits = await self.vectors.nearest(
                session, owner_id, self.model, vector, limit=wanted, min_score=self.settings.index_min_score
            )
            titles = await store.live_titles(session, owner_id, [h.record_id for h in hits], tag)
            await session.commit()
        hits = [h for h in hits if h.record_id in titles][:limit]
        return [Source(h.record_id, titles[h.record_id], round(h.score, 4), snippet_of(h.text), h.text) for h in hits]

    async def related(self, owner_id: str, record_id: str, limit: int) -> list[tuple[str, float]] | None:
        """The caller's other live records nearest to this one; None when the record is not the
        caller's (or not indexed yet: then an empty list)."""
        async with self.db.session() as session:
            if not await store.live_titles(session, owner_id, [record_id]):
                await session.commit()
                return None
            own = await self.vectors.record_vector(session, owner_id, self.model, record_id)
            hits = []
            if own is not None:
                hits = await self.vectors.nearest(
                    session,
                    owner_id,
                    self.model,
                    own,
                    limit=limit,
                    min_score=self.settings.index_min_score,
                    exclude=record_id,
                )
            await session.commit()
        return [(h.record_id, round(h.score, 4)) for h in hits]

    async def status(self, owner_id: str) -> tuple[store.IndexStatus, int | None]:
        """Where the caller's records stand, and the dimensions of their stored vectors."""
        async with self.db.session() as session:
            status = await store.owner_status(session, owner_id, self.model)
            dimensions = await store.owner_dimensions(session, owner_id, self.model)
            await session.commit()
        return status, dimensions
