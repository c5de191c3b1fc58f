"""Record history (docs/api.md §16): keeping revisions, reading them back, the trash and the purge.

The writes that change a record (``records.py``) call ``keep_previous`` before they change its
title, content or tags; this module never changes a record itself.

Storage: a kept state's content is a reverse delta (``textdiff.encode_delta``) against the state
that replaced it, which is the next kept state or the record itself; every ``FULL_EVERY``-th
state of a run, a state replaced by a delete, and any state whose delta would not be much
smaller than its text are kept whole. Reading revision *k* therefore applies at most
``FULL_EVERY - 1`` deltas, walking up from *k* to the first whole text (or the record). Trimming
removes the oldest revisions only, so no kept delta ever loses the text it is made from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from common.database import Database, end_read, utcnow, write_scope
from common.errors import NotFound
from common.models.record import Record
from common.models.record_revision import FORMAT_DELTA, FORMAT_FULL, KIND_STALE_EDIT, KIND_VERSION, RecordRevision
from mobile_service.app import crud
from mobile_service.app.config import MobileSettings
from mobile_service.app.merge import TextState
from mobile_service.app.schemas import MAX_VERSION
from mobile_service.app.textdiff import apply_delta, encode_delta

logger = logging.getLogger(__name__)

FULL_EVERY = 32
REVISION_NOT_FOUND = "Revision not found"


def state_of(record: Record) -> TextState:
    return TextState(title=record.title, content=record.content, tags=list(record.tags))


def parse_revision(value: str) -> int:
    """Revision numbers are positive integers; anything else is a revision that does not exist (404)."""
    if not value.isascii() or not value.isdigit() or len(value) > 16 or not 1 <= int(value) <= MAX_VERSION:
        raise NotFound(REVISION_NOT_FOUND)
    return int(value)


# ---------------------------------------------------------------- keeping revisions (inside a write)


def _revision(record: Record, number: int, state: TextState, **fields: object) -> RecordRevision:
    return RecordRevision(
        record_id=record.id,
        owner_id=record.owner_id,
        revision=number,
        title=state.title,
        tags=list(state.tags),
        created_at=utcnow(),
        **fields,
    )


async def keep_previous(session: AsyncSession, record: Record, new_content: str, *, whole: bool = False) -> None:
    """Before a change of the record's text: keep its current state as a revision (a delta
    against ``new_content``, or whole), unless it is already the newest one (a conflict kept it)."""
    newest = await crud.newest_states(session, record.owner_id, record.id, FULL_EVERY)
    if newest and newest[0].version == record.version:
        return
    run = 0
    while run < len(newest) and newest[run].content_format == FORMAT_DELTA:
        run += 1
    content, content_format = record.content, FORMAT_FULL
    if not whole and run < FULL_EVERY - 1:
        delta = encode_delta(record.content, new_content)
        if len(delta) < len(record.content) // 2:
            content, content_format = delta, FORMAT_DELTA
    await _add_version(session, record, content_format, content)


async def _add_version(session: AsyncSession, record: Record, content_format: str, content: str) -> int:
    """Add the record's current version as its next revision (content as given); its number."""
    number = await crud.newest_revision_number(session, record.owner_id, record.id) + 1
    session.add(
        _revision(
            record,
            number,
            state_of(record),
            kind=KIND_VERSION,
            version=record.version,
            from_version=record.text_version or record.version,
            content_format=content_format,
            content=content,
            device=record.device,
        )
    )
    return number


async def keep_state(session: AsyncSession, record: Record) -> int:
    """Keep the record's current state whole (the "theirs" of a conflict) and return its
    revision; when it is already kept, the revision that holds it."""
    newest = await crud.newest_states(session, record.owner_id, record.id, 1)
    if newest and newest[0].version == record.version:
        return int(newest[0].revision)
    number = await _add_version(session, record, FORMAT_FULL, record.content)
    await session.flush()
    return number


async def keep_stale_edit(
    session: AsyncSession, record: Record, yours: TextState, based_on: int, device: str | None
) -> int:
    """Keep an edit sent against an older version as it was sent (merged or refused, nothing is lost)."""
    number = await crud.newest_revision_number(session, record.owner_id, record.id) + 1
    session.add(
        _revision(
            record,
            number,
            yours,
            kind=KIND_STALE_EDIT,
            version=based_on,
            from_version=based_on,
            content_format=FORMAT_FULL,
            content=yours.content,
            device=device,
        )
    )
    await session.flush()
    return number


# ---------------------------------------------------------------- reading revisions back


async def revision_content(session: AsyncSession, record: Record, revision: RecordRevision) -> str:
    """A revision's text: whole, or its delta applied to the text of the state after it."""
    if revision.content_format == FORMAT_FULL:
        return revision.content
    limit: int | None = FULL_EVERY * 2
    while True:
        chain = await crud.state_chain(session, record.owner_id, record.id, revision.revision, limit)
        whole = next((i for i, row in enumerate(chain) if row.content_format == FORMAT_FULL), None)
        if whole is not None or limit is None or len(chain) < limit:
            break
        limit = None  # a run longer than FULL_EVERY (stale edits in between): read all of it
    text = chain[whole].content if whole is not None else record.content
    for row in reversed(chain[:whole] if whole is not None else chain):
        text = apply_delta(text, row.content)
    return text


async def state_at(session: AsyncSession, record: Record, version: int) -> TextState | None:
    """The record's text at ``version`` (the base of a stale change), or None when that state
    is no longer kept or the version was never the record's."""
    if not 1 <= version <= record.version:
        return None
    if (record.text_version or record.version) <= version:
        return state_of(record)
    found = await crud.state_at(session, record.owner_id, record.id, version)
    if found is None:
        return None
    return TextState(title=found.title, content=await revision_content(session, record, found), tags=list(found.tags))


async def owned_record(session: AsyncSession, owner_id: str, record_id: str) -> Record:
    """The caller's record, tombstones included (its history stays readable in the trash)."""
    record = await crud.get_owned(session, owner_id, record_id)
    if record is None:
        raise NotFound("Record not found")
    return record


async def owned_revision(session: AsyncSession, record: Record, revision: str) -> RecordRevision:
    found = await crud.get_revision(session, record.owner_id, record.id, parse_revision(revision))
    if found is None:
        raise NotFound(REVISION_NOT_FOUND)
    return found


# ---------------------------------------------------------------- the purge


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    revisions_keep: int
    revisions_days: float
    trash_days: float
    batch: int

    @classmethod
    def from_settings(cls, settings: MobileSettings) -> HistoryPolicy:
        return cls(
            settings.record_revisions_keep,
            settings.record_revisions_days,
            settings.record_trash_days,
            settings.record_purge_batch,
        )

    def trash_since(self, now: datetime) -> datetime:
        return now - timedelta(days=self.trash_days)


@dataclass(frozen=True, slots=True)
class PurgeReport:
    tombstones: int
    revisions: int


async def _purge_owner(session: AsyncSession, owner_id: str, before: datetime, batch: int) -> int:
    """The owner's tombstones deleted before ``before``, removed in batches (each a write of the owner)."""
    purged = 0
    while True:
        async with write_scope(session):
            await crud.next_change_seq(session, owner_id)  # serialises with the owner's writes
            rows = await crud.tombstones_before(session, owner_id, before, batch)
            if rows:
                await crud.purge_records(session, owner_id, [r.id for r in rows], max(r.change_seq for r in rows))
                await session.commit()
        purged += len(rows)
        if len(rows) < batch:
            return purged


async def purge_tombstones(session: AsyncSession, policy: HistoryPolicy, now: datetime) -> int:
    """Tombstones past the trash window, gone from the trash and from sync."""
    before, purged = policy.trash_since(now), 0
    while True:
        owners = await crud.owners_with_tombstones_before(session, before, 100)
        await end_read(session)
        if not owners:
            return purged
        for owner_id in owners:
            purged += await _purge_owner(session, owner_id, before, policy.batch)


async def trim_revisions(session: AsyncSession, policy: HistoryPolicy, now: datetime) -> int:
    """Revisions past both limits: older than the newest ``revisions_keep`` of their record and
    kept more than ``revisions_days`` ago."""
    before, after, trimmed = now - timedelta(days=policy.revisions_days), "", 0
    while True:
        found = await crud.records_with_old_revisions(session, policy.revisions_keep, before, after, policy.batch)
        await end_read(session)
        for owner_id, record_id in found:
            async with write_scope(session):
                await crud.next_change_seq(session, owner_id)
                trimmed += await crud.trim_revisions(session, owner_id, record_id, policy.revisions_keep, before)
                await session.commit()
        if len(found) < policy.batch:
            return trimmed
        after = found[-1][1]


async def purge_expired(db: Database, policy: HistoryPolicy, now: datetime | None = None) -> PurgeReport:
    """One pass of the purge: tombstones past the trash window, revisions past their limits."""
    now = now or utcnow()
    async with db.session() as session:
        tombstones = await purge_tombstones(session, policy, now)
        revisions = await trim_revisions(session, policy, now)
    if tombstones or revisions:
        logger.info("purged %d tombstones and %d revisions", tombstones, revisions)
    return PurgeReport(tombstones, revisions)


class RecordPurger:
    """The purge, run by every mobile_service process every ``interval`` seconds from start-up
    (each pass is idempotent, so replicas running it at once only repeat each other's work)."""

    def __init__(self, policy: HistoryPolicy, interval: float) -> None:
        self.policy = policy
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self, db: Database) -> None:
        self._task = asyncio.create_task(self._run(db), name="record-purge")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, db: Database) -> None:
        while True:
            try:
                await purge_expired(db, self.policy)
            except Exception:  # the database may be away for a while: try again next time
                logger.exception("record purge failed; retrying in %.0f s", self.interval)
            await asyncio.sleep(self.interval)
