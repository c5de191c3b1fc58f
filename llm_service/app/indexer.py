"""The record indexer (docs/api.md §15): runs in every llm_service process and claims pending
records of the index with the lease of ``common.leases``, so replicas share the backlog and a
killed process's records are taken up again when its leases expire (at once by the same worker
id after a restart). Each record is chunked and embedded in one provider call, accounted to its
owner; a failure waits with exponential backoff, and after ``INDEX_MAX_ATTEMPTS`` the record is
``failed`` and retried after ``INDEX_FAILED_RETRY_SECONDS``. Work made from a version that a newer
write has replaced is never kept."""

from __future__ import annotations

import hashlib
import logging
import socket
from datetime import timedelta

from common.database import Database, utcnow
from common.leases import LeaseWorkers
from common.llm_client import LLMClient
from common.record_index import store
from common.record_index.chunking import chunk_text, embedding_input
from common.record_index.vectors import to_bytes
from llm_service.app.config import LLMSettings
from llm_service.app.embeddings import USAGE_KIND, estimated_usage
from llm_service.app.usage import record_usage

logger = logging.getLogger(__name__)

MAX_CHUNKS = 64  # one provider call per record (the embeddings route's input limit)
MAX_BACKOFF_SECONDS = 300.0


def content_hash(title: str, content: str) -> str:
    return hashlib.sha256(f"{title}\x00{content}".encode()).hexdigest()


def default_worker_id(settings: LLMSettings) -> str:
    """Stable across restarts of one replica, distinct between replicas (host and port)."""
    return settings.index_worker_id or f"{socket.gethostname()}:{settings.port}:index"


class RecordIndexer(LeaseWorkers):
    def __init__(self, db: Database, llm: LLMClient, settings: LLMSettings) -> None:
        super().__init__(
            db,
            store.leased_index(settings.llm_embedding_model),
            worker_id=default_worker_id(settings),
            max_active=settings.index_max_active,
            poll_seconds=settings.index_poll_seconds,
            lease_seconds=settings.index_lease_seconds,
            name="record index",
        )
        self.llm = llm
        self.settings = settings
        self.model = settings.llm_embedding_model

    async def work(self, row_id: str) -> None:
        async with self.db.session() as session:
            work = await store.load_work(session, row_id)
            await session.commit()
        if work is None:
            return
        if not work.live:
            async with self.db.session() as session:
                await store.drop_row(session, row_id, self.worker_id)
            return
        digest = content_hash(work.title, work.content)
        if digest == work.content_hash and work.model == self.model:
            chunks = None  # e.g. only tags or pinning changed: the stored chunks still hold
        else:
            try:
                chunks = await self._embed(work)
            except Exception as exc:  # the provider's outage, refusal or timeout alike
                await self._failed(row_id, exc)
                return
        async with self.db.session() as session:
            kept = await store.save_chunks(
                session, work, self.worker_id, model=self.model, content_hash=digest, chunks=chunks
            )
            if not kept:  # a newer write came (the row is pending again) or the lease was lost
                await self.table.release(session, row_id, self.worker_id)
                await session.commit()

    async def _embed(self, work: store.IndexWork) -> list[store.ChunkRow]:
        pieces = chunk_text(work.title, work.content)[:MAX_CHUNKS]
        if not pieces:
            return []
        inputs = [embedding_input(work.title, piece) for piece in pieces]
        result = await self.llm.embed(inputs, model=self.model)
        await record_usage(self.db, work.owner_id, self.model, USAGE_KIND, result.usage or estimated_usage(inputs))
        return [
            store.ChunkRow(ordinal=n, text=piece, embedding=to_bytes(vector), dimensions=len(vector))
            for n, (piece, vector) in enumerate(zip(pieces, result.vectors, strict=True))
        ]

    async def _failed(self, row_id: str, exc: Exception) -> None:
        async with self.db.session() as session:
            attempts = await store.attempts_of(session, row_id) + 1
            failed = attempts >= self.settings.index_max_attempts
            wait = (
                self.settings.index_failed_retry_seconds
                if failed
                else min(self.settings.index_retry_base_seconds * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
            )
            detail = getattr(exc, "detail", None) or type(exc).__name__
            logger.warning("indexing record %s failed (attempt %d): %s", row_id, attempts, detail)
            await store.save_failure(
                session,
                row_id,
                self.worker_id,
                error=str(detail),
                attempts=attempts,
                retry_at=utcnow() + timedelta(seconds=wait),
                failed=failed,
            )
