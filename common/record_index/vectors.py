"""Nearest chunks among ONE owner's vectors (docs/api.md §15). The owner's chunk vectors are
loaded as one float32 matrix and kept per process, under a key read from the database (the
owner's change sequence and chunk generation), so a write through any replica makes every
process reload before it answers again; similarity is one matrix-vector product."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from common.record_index import store

CACHED_OWNERS = 16  # each entry is an owner's vectors: 10,000 records of 1,536 dims ≈ 60 MB


def to_bytes(vector: Sequence[float]) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def normalised(vector: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    return array / norm if norm else array


@dataclass(frozen=True, slots=True)
class OwnerMatrix:
    key: tuple[int, int]
    chunk_ids: list[str]
    record_ids: np.ndarray  # record id of each row
    matrix: np.ndarray  # rows: normalised chunk vectors


@dataclass(frozen=True, slots=True)
class Hit:
    record_id: str
    score: float
    chunk_id: str


class VectorIndex:
    """The per-process cache of owners' matrices, and the searches over them."""

    def __init__(self, max_owners: int = CACHED_OWNERS) -> None:
        self.max_owners = max_owners
        self._cache: OrderedDict[tuple[str, str], OwnerMatrix] = OrderedDict()

    async def matrix(self, session: AsyncSession, owner_id: str, model: str) -> OwnerMatrix:
        key = await store.owner_cache_key(session, owner_id)
        cached = self._cache.get((owner_id, model))
        if cached is not None and cached.key == key:
            self._cache.move_to_end((owner_id, model))
            return cached
        rows = await store.owner_vectors(session, owner_id, model)
        loaded = _matrix_of(key, rows)
        self._cache[(owner_id, model)] = loaded
        self._cache.move_to_end((owner_id, model))
        while len(self._cache) > self.max_owners:
            self._cache.popitem(last=False)
        return loaded

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


def _matrix_of(key: tuple[int, int], rows: list[object]) -> OwnerMatrix:
    if not rows:
        return OwnerMatrix(key, [], np.empty(0, dtype=object), np.empty((0, 0), dtype=np.float32))
    matrix = np.vstack([np.frombuffer(row.embedding, dtype="<f4") for row in rows])  # type: ignore[attr-defined]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    record_ids = np.array([row.record_id for row in rows], dtype=object)  # type: ignore[attr-defined]
    return OwnerMatrix(key, [row.id for row in rows], record_ids, matrix / norms)  # type: ignore[attr-defined]


def _best_per_record(
    owner: OwnerMatrix, scores: np.ndarray, *, limit: int, min_score: float, exclude: str | None
) -> list[Hit]:
    hits: list[Hit] = []
    seen: set[str] = set()
    for row in np.argsort(-scores, kind="stable"):
        score = float(scores[row])
        if score < min_score or len(hits) >= limit:
            break
        record_id = owner.record_ids[row]
        if record_id in seen or record_id == exclude:
            continue
        seen.add(record_id)
        hits.append(Hit(record_id, score, owner.chunk_ids[row]))
    return hits
