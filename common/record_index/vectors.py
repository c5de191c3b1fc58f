"""Nearest chunks among ONE owner's vectors (docs/api.md §15). The owner's chunk vectors (and
texts, for snippets) are kept per process as one float32 matrix under the owner's chunk
generation, read from the database on every query: any change of the owner's chunks through any
replica (a record indexed, a record deleted) makes every process refresh the records that
changed before it answers again. Similarity is one matrix-vector product."""

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


class OwnerVectors:
    """One owner's chunk vectors in a growable float32 matrix (normalised rows). A refresh drops
    the rows of the records that changed (marked dead; compacted once a quarter is dead) and
    appends their new rows, so it costs what changed, not the owner's whole index."""

    def __init__(self, generation: int, change_seq: int, dims: int) -> None:
        self.generation = generation  # the owner's chunk generation and change sequence when read
        self.change_seq = change_seq
        self.dims = dims
        self.size = 0
        self.dead = 0
        self.matrix = np.empty((0, dims), dtype=np.float32)  # rows beyond ``size`` are spare capacity
        self.alive = np.empty(0, dtype=bool)
        self.record_ids: list[str] = []
        self.chunk_ids: list[str] = []
        self.texts: list[str] = []
        self.rows_of: dict[str, list[int]] = {}

    @classmethod
    def load(cls, generation: int, change_seq: int, rows: list[Any]) -> OwnerVectors:
        owner = cls(generation, change_seq, len(rows[0].embedding) // 4 if rows else 0)
        owner.append(rows)
        return owner

    @property
    def live(self) -> int:
        return self.size - self.dead

    @property
    def nbytes(self) -> int:
        return self.matrix.nbytes

    def append(self, rows: list[Any]) -> None:
        same = [row for row in rows if len(row.embedding) == self.dims * 4]  # another size: not comparable
        if not same:
            return
        block = np.frombuffer(b"".join(row.embedding for row in same), dtype="<f4").reshape(len(same), self.dims)
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        self._reserve(self.size + len(same))
        self.matrix[self.size : self.size + len(same)] = block / norms
        self.alive[self.size : self.size + len(same)] = True
        for offset, row in enumerate(same):
            self.rows_of.setdefault(row.record_id, []).append(self.size + offset)
            self.record_ids.append(row.record_id)
            self.chunk_ids.append(row.id)
            self.texts.append(row.text)
        self.size += len(same)

    def drop(self, record_ids: set[str]) -> None:
        for record_id in record_ids:
            for row in self.rows_of.pop(record_id, []):
                self.alive[row] = False
                self.matrix[row] = 0.0
                self.dead += 1

    def compacted(self) -> OwnerVectors:
        """Itself, or a copy without the dead rows once they are a quarter of it."""
        if self.dead * 4 <= self.size:
            return self
        keep = np.flatnonzero(self.alive[: self.size])
        copy = OwnerVectors(self.generation, self.change_seq, self.dims)
        copy._reserve(len(keep))
        copy.matrix[: len(keep)] = self.matrix[keep]
        copy.alive[: len(keep)] = True
        for new, old in enumerate(keep.tolist()):
            copy.rows_of.setdefault(self.record_ids[old], []).append(new)
            copy.record_ids.append(self.record_ids[old])
            copy.chunk_ids.append(self.chunk_ids[old])
            copy.texts.append(self.texts[old])
        copy.size = len(keep)
        return copy

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Cosine of every row to the normalised ``query``; dead rows score -inf."""
        scores = self.matrix[: self.size] @ query
        scores[~self.alive[: self.size]] = -np.inf
        return scores

    def live_rows(self) -> list[tuple[str, str, np.ndarray]]:
        return [
            (self.record_ids[i], self.chunk_ids[i], self.matrix[i]) for i in np.flatnonzero(self.alive[: self.size])
        ]

    def _reserve(self, rows: int) -> None:
        if rows <= len(self.matrix):
            return
        capacity = max(rows + rows // 4, len(self.matrix) * 3 // 2, 64)  # room for the next writes
        matrix = np.zeros((capacity, self.dims), dtype=np.float32)
        matrix[: self.size] = self.matrix[: self.size]
        alive = np.zeros(capacity, dtype=bool)
        alive[: self.size] = self.alive[: self.size]
        self.matrix, self.alive = matrix, alive


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
        self._cache: OrderedDict[tuple[str, str], OwnerVectors] = OrderedDict()

    async def matrix(self, session: AsyncSession, owner_id: str, model: str) -> OwnerVectors:
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
        total = sum(entry.nbytes for entry in self._cache.values())
        for key in list(self._cache):
            if total <= self.max_bytes:
                break
            if key != keep:
                total -= self._cache.pop(key).nbytes

    async def _refreshed(
        self,
        session: AsyncSession,
        owner_id: str,
        model: str,
        cached: OwnerVectors | None,
        generation: int,
        change_seq: int,
    ) -> OwnerVectors:
        changed = None
        if cached is not None:
            changed = await store.changed_since(
                session, owner_id, model, generation=cached.generation, change_seq=cached.change_seq, limit=REFRESH_MAX
            )
        # None: too many changed; empty: the generation moved for no record seen; no dims: was empty
        if cached is None or not changed or not cached.dims:
            return OwnerVectors.load(generation, change_seq, await store.owner_vectors(session, owner_id, model))
        fresh = await store.owner_vectors(session, owner_id, model, sorted(changed))
        if any(len(row.embedding) != cached.dims * 4 for row in fresh):  # the provider's size changed
            return OwnerVectors.load(generation, change_seq, await store.owner_vectors(session, owner_id, model))
        cached.drop(changed)
        cached.append(fresh)
        cached.generation, cached.change_seq = generation, change_seq
        return cached.compacted()

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
        q = normalised(query)
        if not owner.live or q.shape[0] != owner.dims:
            return []  # nothing indexed, or a vector of another model's size: nothing comparable
        return _best_per_record(owner, owner.scores(q), limit=limit, min_score=min_score, exclude=exclude)

    async def record_vector(
        self, session: AsyncSession, owner_id: str, model: str, record_id: str
    ) -> np.ndarray | None:
        """The record's own direction: the mean of its chunk vectors (None if it has none)."""
        owner = await self.matrix(session, owner_id, model)
        rows = owner.rows_of.get(record_id)
        return normalised(owner.matrix[rows].mean(axis=0)) if rows else None


def _ranked_rows(scores: np.ndarray, wanted: int) -> np.ndarray:
    """Row numbers of the ``wanted`` best scores, best first (a partial sort: at 100,000 rows a
    full one is most of a query's time)."""
    if wanted >= len(scores):
        return np.argsort(-scores, kind="stable")
    top = np.argpartition(-scores, wanted)[:wanted]
    return top[np.argsort(-scores[top], kind="stable")]


def _best_per_record(
    owner: OwnerVectors, scores: np.ndarray, *, limit: int, min_score: float, exclude: str | None
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
    owner: OwnerVectors, scores: np.ndarray, rows: np.ndarray, limit: int, min_score: float, exclude: str | None
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
