"""Nearest chunks among ONE owner's vectors (docs/api.md §15). The owner's chunk vectors (and
texts, for snippets) are loaded as one float32 matrix and kept per process under the owner's
chunk generation, read from the database on every query: any change of the owner's chunks
through any replica (a record indexed, a record deleted) makes every process reload before it
answers again. Similarity is one matrix-vector product."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from common.record_index import store

DEFAULT_CACHE_BYTES = 256 * 2**20  # 10,000 records of 1,536 dims are ≈ 60 MB of float32
REFRESH_MAX = 2_000  # records changed since the cached copy beyond which it is reloaded whole


def to_bytes(vector: Sequence[float]) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def normalised(vector: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    return array / norm if norm else array


@dataclass(frozen=True, slots=True)
class OwnerMatrix:
    generation: int  # the owner's chunk generation and change sequence when it was read
    change_seq: int
    chunk_ids: list[str]
    texts: list[str]
    record_ids: np.ndarray  # record id of each row
    matrix: np.ndarray  # rows: normalised chunk vectors


@dataclass(frozen=True, slots=True)
class Hit:
    record_id: str
    score: float
    chunk_id: str
    text: str


class VectorIndex:
    """The per-process cache of owners' matrices, and the searches over them."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._cache: OrderedDict[tuple[str, str], OwnerMatrix] = OrderedDict()

    async def matrix(self, session: AsyncSession, owner_id: str, model: str) -> OwnerMatrix:
        """The owner's vectors as of now: the cached copy when the owner's chunk generation has not
        moved; else the copy with only the records changed since replaced (or all reloaded)."""
        generation = await store.owner_generation(session, owner_id)
        cached = self._cache.get((owner_id, model))
        if cached is None or cached.generation != generation:
            change_seq = await store.owner_change_seq(session, owner_id)
            cached = await self._refreshed(session, owner_id, model, cached, generation, change_seq)
            self._cache[(owner_id, model)] = cached
            self._evict(keep=(owner_id, model))
        self._cache.move_to_end((owner_id, model))
        return cached

    def _evict(self, keep: tuple[str, str]) -> None:
        """Drop the least recently used owners until the cache fits ``max_bytes`` (the owner just
        asked for stays, even alone above it: its query needs it)."""
        total = sum(entry.matrix.nbytes for entry in self._cache.values())
        for key in list(self._cache):
            if total <= self.max_bytes:
                break
            if key != keep:
                total -= self._cache.pop(key).matrix.nbytes

    async def _refreshed(
        self,
        session: AsyncSession,
        owner_id: str,
        model: str,
        cached: OwnerMatrix | None,
        generation: int,
        change_seq: int,
    ) -> OwnerMatrix:
        changed = None
        if cached is not None:
            changed = await store.changed_since(
                session, owner_id, model, generation=cached.generation, change_seq=cached.change_seq, limit=REFRESH_MAX
            )
        if cached is None or not changed:  # None: too many; empty: the generation moved for no record seen
            return _matrix_of(generation, change_seq, await store.owner_vectors(session, owner_id, model))
        fresh = await store.owner_vectors(session, owner_id, model, sorted(changed))
        return _replaced(cached, generation, change_seq, changed, fresh)

    async def nearest(
        self,
        session: AsyncSession,
        owner_id: str,
        model: str,
        query: Sequence[float],
        *,
        limit: int,
        min_score: float = 0.0,
        exclude: str | None = None,
    ) -> list[Hit]:
        """The owner's records nearest to ``query``, best first: one hit per record (its best chunk)."""
        owner = await self.matrix(session, owner_id, model)
        if not owner.chunk_ids:
            return []
        q = normalised(query)
        if q.shape[0] != owner.matrix.shape[1]:
            return []  # a vector of another model's size: nothing of this owner is comparable
        return _best_per_record(owner, owner.matrix @ q, limit=limit, min_score=min_score, exclude=exclude)

    async def record_vector(
        self, session: AsyncSession, owner_id: str, model: str, record_id: str
    ) -> np.ndarray | None:
        """The record's own direction: the mean of its chunk vectors (None if it has none)."""
        owner = await self.matrix(session, owner_id, model)
        rows = owner.matrix[owner.record_ids == record_id] if owner.chunk_ids else np.empty((0, 0))
        return normalised(rows.mean(axis=0)) if len(rows) else None


def _matrix_of(generation: int, change_seq: int, rows: list[Any]) -> OwnerMatrix:
    if not rows:
        return OwnerMatrix(generation, change_seq, [], [], np.empty(0, dtype=object), np.empty((0, 0), np.float32))
    dims = len(rows[0].embedding) // 4
    same = [row for row in rows if len(row.embedding) == dims * 4]  # a mixed-size leftover is skipped
    matrix = np.frombuffer(b"".join(row.embedding for row in same), dtype="<f4").reshape(len(same), dims)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    record_ids = np.array([row.record_id for row in same], dtype=object)
    chunk_ids, texts = [row.id for row in same], [row.text for row in same]
    return OwnerMatrix(generation, change_seq, chunk_ids, texts, record_ids, matrix / norms)


def _replaced(
    cached: OwnerMatrix, generation: int, change_seq: int, changed: set[str], fresh: list[Any]
) -> OwnerMatrix:
    """``cached`` without the rows of ``changed`` records, plus their ``fresh`` rows."""
    added = _matrix_of(generation, change_seq, fresh)
    if not cached.chunk_ids:
        return added
    # A set lookup per row: np.isin over object (string) arrays sorts them, ~100 ms at 100,000.
    keep = np.fromiter((record_id not in changed for record_id in cached.record_ids), bool, len(cached.chunk_ids))
    if added.chunk_ids and added.matrix.shape[1] != cached.matrix.shape[1]:
        return added  # the provider's dimensions changed: only the new vectors are comparable
    kept = np.flatnonzero(keep)
    return OwnerMatrix(
        generation,
        change_seq,
        [cached.chunk_ids[i] for i in kept] + added.chunk_ids,
        [cached.texts[i] for i in kept] + added.texts,
        np.concatenate([cached.record_ids[keep], added.record_ids]),
        np.vstack([cached.matrix[keep], added.matrix]) if added.chunk_ids else cached.matrix[keep],
    )


def _ranked_rows(scores: np.ndarray, wanted: int) -> np.ndarray:
    """Row numbers of the ``wanted`` best scores, best first (a partial sort: at 100,000 rows a
    full one is most of a query's time)."""
    if wanted >= len(scores):
        return np.argsort(-scores, kind="stable")
    top = np.argpartition(-scores, wanted)[:wanted]
    return top[np.argsort(-scores[top], kind="stable")]


def _best_per_record(
    owner: OwnerMatrix, scores: np.ndarray, *, limit: int, min_score: float, exclude: str | None
) -> list[Hit]:
    """One hit per record (its best chunk), best first. Records have several chunks, so the best
    rows are taken in growing batches until ``limit`` records are found or the rows run out."""
    wanted = min(len(scores), max(4 * limit, 64))
    while True:
        rows = _ranked_rows(scores, wanted)
        hits = _first_records(owner, scores, rows, limit, min_score, exclude)
        exhausted = wanted >= len(scores) or float(scores[rows[-1]]) < min_score
        if len(hits) >= limit or exhausted:
            return hits
        wanted = min(len(scores), wanted * 4)


def _first_records(
    owner: OwnerMatrix, scores: np.ndarray, rows: np.ndarray, limit: int, min_score: float, exclude: str | None
) -> list[Hit]:
    hits: list[Hit] = []
    seen: set[str] = set()
    for row in rows:
        score = float(scores[row])
        if score < min_score or len(hits) >= limit:
            break
        record_id = owner.record_ids[row]
        if record_id in seen or record_id == exclude:
            continue
        seen.add(record_id)
        hits.append(Hit(record_id, score, owner.chunk_ids[row], owner.texts[row]))
    return hits
