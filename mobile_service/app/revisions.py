"""What the history routes do (docs/api.md §16): list, read and diff a record's revisions, restore
one as a new version, list the trash and undelete. Writes take the one transaction pattern of
``records.owned_write``; every query names the caller (``history``, ``crud``), so another user's
record, revision or trash entry is a 404 exactly like a missing one."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from common.database import end_read, utcnow
from common.errors import NotFound
from common.models.record import Record
from common.models.record_revision import RecordRevision
from common.pagination import Page, page_of
from mobile_service.app import crud, history, records
from mobile_service.app.history import HistoryPolicy
from mobile_service.app.merge import TextState
from mobile_service.app.schemas import (
    DiffHunk,
    DiffSide,
    RecordRead,
    RevisionDiff,
    RevisionListItem,
    RevisionRead,
    TrashItem,
)
from mobile_service.app.textdiff import diff_hunks, unified_diff

CURRENT = "current"


async def list_revisions(
    session: AsyncSession, owner_id: str, record_id: str, offset: int, limit: int
) -> Page[RevisionListItem]:
    """The record's revisions, newest first (a record in the trash keeps its history readable)."""
    record = await history.owned_record(session, owner_id, records.parse_record_id(record_id))
    rows, total = await crud.revisions_page(session, owner_id, record.id, offset, limit)
    items = [RevisionListItem.model_validate(row) for row in rows]
    await end_read(session)
    return page_of(items, total, offset, limit)


async def _text(session: AsyncSession, record: Record, revision: RecordRevision) -> TextState:
    content = await history.revision_content(session, record, revision)
    return TextState(title=revision.title, content=content, tags=list(revision.tags))


async def read_revision(session: AsyncSession, owner_id: str, record_id: str, revision: str) -> RevisionRead:
    record = await history.owned_record(session, owner_id, records.parse_record_id(record_id))
    found = await history.owned_revision(session, record, revision)
    state = await _text(session, record, found)
    item = RevisionListItem.model_validate(found)
    await end_read(session)
    return RevisionRead(**item.model_dump(), content=state.content, tags=state.tags)


async def diff(session: AsyncSession, owner_id: str, record_id: str, revision: str, against: str) -> RevisionDiff:
    """From revision ``revision`` to ``against`` (the record now, or another revision)."""
    record = await history.owned_record(session, owner_id, records.parse_record_id(record_id))
    old = await history.owned_revision(session, record, revision)
    old_state = await _text(session, record, old)
    if against == CURRENT:
        new_state, new_side = (
            history.state_of(record),
            DiffSide(revision=None, version=record.version, title=record.title, tags=list(record.tags)),
        )
    else:
        new = await history.owned_revision(session, record, against)
        new_state = await _text(session, record, new)
        new_side = DiffSide(revision=new.revision, version=new.version, title=new.title, tags=list(new.tags))
    await end_read(session)
    hunks = diff_hunks(old_state.content, new_state.content)
    new_name = "current" if new_side.revision is None else f"revision {new_side.revision}"
    return RevisionDiff(
        old=DiffSide(revision=old.revision, version=old.version, title=old.title, tags=list(old.tags)),
        new=new_side,
        unified=unified_diff(hunks, f"revision {old.revision}", new_name),
        hunks=[DiffHunk.model_validate(h) for h in hunks],
    )


async def restore_revision(
    session: AsyncSession,
    owner_id: str,
    record_id: str,
    revision: str,
    expected_version: int | None,
    device: str | None,
) -> RecordRead:
    """A new version with the revision's title, content and tags; the state it replaces is kept
    like any other (history is never rewritten). A stale ``expected_version`` is 409."""
    async with records.owned_write(session, owner_id, record_id) as (record, seq):
        found = await history.owned_revision(session, record, revision)
        records.check_version(record, expected_version)
        state = await _text(session, record, found)
        changes = {"title": state.title, "content": state.content, "tags": state.tags}
        await records.apply_changes(session, record, seq, changes, device)
        await session.commit()
        return records.read(record)


async def trash(
    session: AsyncSession, owner_id: str, policy: HistoryPolicy, offset: int, limit: int
) -> Page[TrashItem]:
    """The caller's records deleted within the trash window, newest deletion first, each with
    the title and tags it had before the delete."""
    rows, total = await crud.trash_page(session, owner_id, policy.trash_since(utcnow()), offset, limit)
    before = await crud.last_states(session, owner_id, [row.id for row in rows])
    window = timedelta(days=policy.trash_days)
    items = []
    for row in rows:
        kept = before.get(row.id)
        assert row.deleted_at is not None
        items.append(
            TrashItem(
                id=row.id,
                title=kept.title if kept else "",
                tags=list(kept.tags) if kept else [],
                version=row.version,
                deleted_at=row.deleted_at,
                purge_after=row.deleted_at + window,
                revision=kept.revision if kept else None,
            )
        )
    await end_read(session)
    return page_of(items, total, offset, limit)


async def undelete(
    session: AsyncSession, owner_id: str, record_id: str, policy: HistoryPolicy, device: str | None
) -> RecordRead:
    """Bring a record back from the trash with the state it had before the delete: a new
    version and a new change in the sync feed. A live record is answered as it is (a repeated
    undelete); one deleted before the trash window is 404."""
    async with records.owned_write(session, owner_id, record_id, tombstones=True) as (record, seq):
        if record.deleted_at is None:
            return records.read(record)
        if record.deleted_at < policy.trash_since(utcnow()):
            raise NotFound("Record not found")
        # The tombstone's blank state is not kept: the state before it was kept whole by the delete.
        state = await history.state_at(session, record, record.version - 1) or TextState("", "", [])
        record.deleted_at = None
        records.set_text(record, state, seq, device)
        await crud.replace_tags(session, record)
        await session.flush()
        await crud.reindex_text(session, record)
        await session.commit()
        return records.read(record)
