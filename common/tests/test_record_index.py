"""The semantic index's pieces on a real database (a SQLite file, or PostgreSQL with
TEST_DATABASE_URL): chunking, the owner-scoped vector search and its cache, the version check
that keeps stale work out, and the citation and fusion rules built on them."""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import update

from common.database import Database, utcnow
from common.models.record import Record, RecordChangeCounter
from common.models.record_index import INDEX_INDEXED, RecordIndexState
from common.record_index import store
from common.record_index.chunking import CHUNK_CHARS, chunk_text, embedding_input
from common.record_index.vectors import VectorIndex, to_bytes
from llm_service.app.ask import citations_of
from llm_service.app.retrieval import Source
from mobile_service.app.semantic import fuse

WORKER = "test-worker"
_CHANGE_SEQ = itertools.count(1)


def run_on(database_url: str, scenario: Callable[[Database], Awaitable[None]]) -> None:
    """Run ``scenario`` in one event loop with its own engine (asyncpg's pool is bound to its loop)."""

    async def main() -> None:
        db = Database(database_url)
        try:
            await db.create_all()
            await scenario(db)
        finally:
            await db.dispose()

    asyncio.run(main())


def unit(slot: int, dims: int = 8) -> list[float]:
    return [1.0 if i == slot else 0.0 for i in range(dims)]


async def add_record(db: Database, owner: str, title: str, vector: list[float], version: int = 1) -> str:
    """A live record indexed at ``version`` with one chunk of ``vector``; returns its id."""
    record_id = str(uuid.uuid4())
    async with db.session() as session:
        seq = next(_CHANGE_SEQ)  # the owner's change feed, as mobile_service's writes number it
        session.add(Record(id=record_id, owner_id=owner, title=title, content=title, version=version, change_seq=seq))
        await session.merge(RecordChangeCounter(id=owner, value=seq))
        session.add(RecordIndexState(id=record_id, owner_id=owner, wanted_version=version, lease_owner=WORKER))
        await session.flush()
        work = store.IndexWork(record_id, owner, version, title, title, True, None, None)
        chunk = store.ChunkRow(0, title, to_bytes(vector), len(vector))
        assert await store.save_chunks(session, work, WORKER, model="m", content_hash="h", chunks=[chunk])
    return record_id


def test_chunks_follow_paragraphs_stay_bounded_and_overlap() -> None:
    paragraphs = [f"Paragraph {n}: " + "word " * 90 for n in range(8)]
    chunks = chunk_text("A title", "# Heading\n\n" + "\n\n".join(paragraphs))
    assert len(chunks) > 1 and all(len(c) <= CHUNK_CHARS for c in chunks)
    assert chunks[0].startswith("# Heading")
    # each chunk after the first starts with the end of the one before
    for before, after in itertools.pairwise(chunks):
        assert after.split("\n\n")[0].strip() in before
    assert chunk_text("", "") == [] and chunk_text("Only a title", "") == ["Only a title"]
    long_block = "x" * (3 * CHUNK_CHARS)
    assert all(len(c) <= CHUNK_CHARS for c in chunk_text("", long_block))
    assert embedding_input("Title", "body") == "Title\n\nbody"


def test_search_sees_only_the_owners_vectors_and_groups_per_record(database_url: str) -> None:
    async def scenario(db: Database) -> None:
        mine = await add_record(db, "owner-a", "mine", unit(0))
        near = await add_record(db, "owner-a", "near", [0.9, 0.1, 0, 0, 0, 0, 0, 0])
        theirs = await add_record(db, "owner-b", "theirs", unit(0))
        index = VectorIndex()
        async with db.session() as session:
            hits = await index.nearest(session, "owner-a", "m", unit(0), limit=10)
            assert [h.record_id for h in hits] == [mine, near]
            assert theirs not in {h.record_id for h in hits}
            assert await index.nearest(session, "owner-a", "m", unit(0), limit=10, exclude=mine) == [
                h for h in hits if h.record_id == near
            ]
            # another model's vectors, or a vector of another size, match nothing
            assert await index.nearest(session, "owner-a", "other-model", unit(0), limit=10) == []
            assert await index.nearest(session, "owner-a", "m", [1.0, 0.0], limit=10) == []
            assert await index.nearest(session, "owner-a", "m", unit(5), limit=10, min_score=0.5) == []

    run_on(database_url, scenario)


def test_a_write_by_any_process_invalidates_the_cached_vectors(database_url: str) -> None:
    async def scenario(db: Database) -> None:
        index = VectorIndex()
        first = await add_record(db, "owner-c", "first", unit(1))
        async with db.session() as session:
            assert [h.record_id for h in await index.nearest(session, "owner-c", "m", unit(1), limit=5)] == [first]
        # another "process" (no shared memory: only the database) indexes a second record
        second = await add_record(db, "owner-c", "second", unit(1))
        async with db.session() as session:
            found = {h.record_id for h in await index.nearest(session, "owner-c", "m", unit(1), limit=5)}
        assert found == {first, second}
        # a delete elsewhere: the record's chunks go, the change counter moves
        async with db.session() as session:
            await store.forget_record(session, "owner-c", first)
            await session.commit()
        async with db.session() as session:
            assert [h.record_id for h in await index.nearest(session, "owner-c", "m", unit(1), limit=5)] == [second]

    run_on(database_url, scenario)


def test_work_made_from_a_replaced_version_is_not_kept(database_url: str) -> None:
    async def scenario(db: Database) -> None:
        record_id = await add_record(db, "owner-d", "v1", unit(2))
        async with db.session() as session:
            record = await session.get(Record, record_id)
            assert record is not None
            record.version = 3
            await store.mark_pending(session, record)
            await session.commit()
        stale = store.IndexWork(record_id, "owner-d", 2, "v2", "v2", True, None, None)
        async with db.session() as session:
            await session.execute(
                RecordIndexState.__table__.update().values(lease_owner=WORKER, lease_expires_at=utcnow())
            )
            await session.commit()
            chunk = store.ChunkRow(0, "v2", to_bytes(unit(3)), 8)
            kept = await store.save_chunks(session, stale, WORKER, model="m", content_hash="x", chunks=[chunk])
            assert not kept
        async with db.session() as session:
            state = await session.get(RecordIndexState, record_id)
            assert state is not None and state.status != INDEX_INDEXED and state.indexed_version == 1
            status = await store.owner_status(session, "owner-d", "m")
            assert (status.records, status.indexed, status.pending) == (1, 0, 1)

    run_on(database_url, scenario)


def test_citations_keep_only_retrieved_sources_the_answer_cites() -> None:
    sources = [Source(f"r{n}", f"T{n}", 0.9, "s", "text") for n in range(1, 4)]
    cited = citations_of("A [2]. B [7]. C [2] and [1]. D [0].", sources)
    assert [(c["n"], c["record_id"]) for c in cited] == [(2, "r2"), (1, "r1")]
    assert citations_of("no citations here", sources) == []


def test_reciprocal_rank_fusion_rewards_records_found_both_ways() -> None:
    fused = [record_id for record_id, _ in fuse(["a", "b", "c"], ["c", "d", "a"])]
    assert fused[:2] == ["a", "c"] and set(fused) == {"a", "b", "c", "d"}


def _contents(owner: Any) -> list[tuple[str, str, tuple[float, ...]]]:
    return sorted(
        (record_id, chunk_id, tuple(vector.round(5).tolist())) for record_id, chunk_id, vector in owner.live_rows()
    )


async def _reindex(db: Database, owner: str, record_id: str, version: int, vectors: list[list[float]]) -> None:
    async with db.session() as session:
        await session.execute(
            update(RecordIndexState)
            .where(RecordIndexState.id == record_id)
            .values(wanted_version=version, lease_owner=WORKER)
        )
        await session.execute(update(Record).where(Record.id == record_id).values(version=version))
        work = store.IndexWork(record_id, owner, version, "t", "c", True, None, None)
        chunks = [store.ChunkRow(n, f"v{version}-{n}", to_bytes(v), len(v)) for n, v in enumerate(vectors)]
        assert await store.save_chunks(session, work, WORKER, model="m", content_hash=str(version), chunks=chunks)


async def _delete(db: Database, owner: str, record_id: str, seq: int) -> None:
    """As mobile_service's delete does: a change of the owner's feed, and the chunks gone with it."""
    async with db.session() as session:
        await session.execute(update(Record).where(Record.id == record_id).values(deleted_at=utcnow(), change_seq=seq))
        await session.merge(RecordChangeCounter(id=owner, value=seq))
        await store.forget_record(session, owner, record_id)
        await session.commit()


def test_the_refreshed_cache_always_equals_a_fresh_load(database_url: str) -> None:
    async def scenario(db: Database) -> None:
        owner, model = "owner-e", "m"
        cached = VectorIndex()
        a = await add_record(db, owner, "a", unit(0))
        b = await add_record(db, owner, "b", unit(1))

        async def check() -> None:
            async with db.session() as session:
                mine = await cached.matrix(session, owner, model)
                fresh = await VectorIndex().matrix(session, owner, model)
            assert _contents(mine) == _contents(fresh)

        await check()
        c = await add_record(db, owner, "c", unit(2))  # a new record indexed
        await check()
        await _reindex(db, owner, a, 2, [unit(3), unit(4)])  # a record re-embedded, now two chunks
        await check()
        await _reindex(db, owner, b, 2, [])  # a record whose text became empty: no chunks
        await check()
        await _delete(db, owner, c, next(_CHANGE_SEQ))  # a delete through the change feed
        await check()
        async with db.session() as session:
            hits = await cached.nearest(session, owner, model, unit(3), limit=5)
        assert [h.record_id for h in hits] == [a]

    run_on(database_url, scenario)


def test_the_cache_keeps_to_its_memory_bound(database_url: str) -> None:
    async def scenario(db: Database) -> None:
        index = VectorIndex()
        owners = [f"owner-f{n}" for n in range(3)]
        for owner in owners:
            await add_record(db, owner, owner, unit(0))
        async with db.session() as session:
            await index.matrix(session, owners[0], "m")
            index.max_bytes = 2 * index._cache[(owners[0], "m")].nbytes  # room for two owners
            for owner in owners:
                assert len(await index.nearest(session, owner, "m", unit(0), limit=5)) == 1
        assert [owner for owner, _ in index._cache] == owners[1:]  # the least recently used went

    run_on(database_url, scenario)


def test_the_cache_equals_a_fresh_load_through_many_random_changes(database_url: str) -> None:
    """Growth past the spare capacity and compaction of dead rows included."""

    async def scenario(db: Database) -> None:
        owner, model, rng = "owner-g", "m", random.Random(5)
        cached = VectorIndex()
        live = [await add_record(db, owner, f"r{n}", unit(n % 8)) for n in range(70)]
        versions = dict.fromkeys(live, 1)
        for step in range(40):
            action = rng.choice(["add", "reindex", "delete"])
            if action == "add" or len(live) < 5:
                live.append(await add_record(db, owner, f"new{step}", unit(rng.randrange(8))))
                versions[live[-1]] = 1
            elif action == "reindex":
                record_id = rng.choice(live)
                versions[record_id] += 1
                chunks = [unit(rng.randrange(8)) for _ in range(rng.randrange(0, 3))]
                await _reindex(db, owner, record_id, versions[record_id], chunks)
            else:
                record_id = live.pop(rng.randrange(len(live)))
                await _delete(db, owner, record_id, next(_CHANGE_SEQ))
            async with db.session() as session:
                mine = await cached.matrix(session, owner, model)
                fresh = await VectorIndex().matrix(session, owner, model)
            assert _contents(mine) == _contents(fresh), (step, action)

    run_on(database_url, scenario)
