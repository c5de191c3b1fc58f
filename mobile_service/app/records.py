"""Record logic (docs/api.md §6, §16): create (idempotent with client UUIDs), read, optimistic
update (a stale change merged three-way, ``merge``), soft delete, publish/unpublish. Routes and
sync call these; these raise ``common.errors`` types. Every change of a record's title, content
or tags keeps the state before it as a revision (``history.keep_previous``).

Every write takes the owner's next change number first (``crud.next_change_seq``): that both
orders the sync feed and serialises the owner's writes, so version checks cannot race.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.database import Database, end_read, write_scope
from common.errors import Conflict, NotFound
from common.models.record import VISIBILITY_PRIVATE, VISIBILITY_PUBLIC, Record
from mobile_service.app import crud, history, merge
from mobile_service.app.merge import TEXT_FIELDS, TextState
from mobile_service.app.schemas import (
    ConflictHunk,
    ConflictInfo,
    ConflictKept,
    ConflictSide,
    PublicRecord,
    RecordCreate,
    RecordRead,
    RecordUpdated,
)

NOT_FOUND = "Record not found"
SLUG = re.compile(r"[A-Za-z0-9_-]{1,64}")


def parse_record_id(value: str) -> str:
    """Record ids are UUIDs; anything else is simply a record that does not exist (404)."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise NotFound(NOT_FOUND) from None


def read(record: Record) -> RecordRead:
    return RecordRead.model_validate(record)


def _conflict_from(current: RecordRead, detail: str) -> Conflict:
    """409 carrying the server's current copy, so the client can merge and retry."""
    return Conflict(detail, extra={"record": current.model_dump(mode="json")})


def check_version(record: Record, expected_version: int | None) -> None:
    """409 with the current copy when the change is based on another version."""
    if expected_version is not None and expected_version != record.version:
        raise _conflict_from(
            read(record), f"Stale version {expected_version}; the record is at version {record.version}"
        )


@asynccontextmanager
async def owned_write(
    session: AsyncSession, owner_id: str, record_id: str, *, tombstones: bool = False
) -> AsyncIterator[tuple[Record, int]]:
    """The preamble of every change to one record, in ``write_scope``: the owner's next change
    number (which also serialises the owner's writes), then the owned record, else 404 (a
    tombstone too, unless ``tombstones``). Yields (record, change number)."""
    record_id = parse_record_id(record_id)
    async with write_scope(session):
        seq = await crud.next_change_seq(session, owner_id)
        record = await crud.get_owned(session, owner_id, record_id)
        if record is None or (record.deleted_at is not None and not tombstones):
            raise NotFound(NOT_FOUND)
        yield record, seq


def _now() -> datetime:
    return datetime.now(UTC)


def _bump(record: Record, seq: int) -> None:
    record.version += 1
    record.change_seq = seq
    record.updated_at = _now()


def _same_as_create(record: Record, data: RecordCreate) -> bool:
    return (
        record.deleted_at is None
        and record.title == data.title
        and record.content == data.content
        and list(record.tags) == data.tags
        and record.pinned == data.pinned
        and list(record.attachments) == data.attachments
    )


async def get_live(session: AsyncSession, owner_id: str, record_id: str) -> Record:
    """The caller's live record, or 404 (absent, deleted and someone else's look the same)."""
    record = await crud.get_owned(session, owner_id, parse_record_id(record_id))
    if record is None or record.deleted_at is not None:
        raise NotFound(NOT_FOUND)
    return record


async def read_live(db: Database, owner_id: str, record_id: str) -> RecordRead:
    """The caller's live record as its response model (the hot path: no session at all)."""
    row = await crud.read_live_quick(db, owner_id, parse_record_id(record_id))
    if row is None:
        raise NotFound(NOT_FOUND)
    return RecordRead.model_validate(row)


async def create_record(
    session: AsyncSession, owner_id: str, data: RecordCreate, device: str | None = None
) -> RecordRead:
    """Create a record. Repeating a create with the same client id and fields returns the same
    record (idempotent); the same id with other fields, or a deleted one, is 409; an id that
    belongs to another user is 404, like a record that does not exist."""
    record_id = str(data.id) if data.id else str(uuid.uuid4())
    async with write_scope(session):
        seq = await crud.next_change_seq(session, owner_id)
        existing = await crud.get_owned(session, owner_id, record_id)
        if existing is not None:
            if _same_as_create(existing, data):
                return read(existing)
            raise _conflict_from(read(existing), "A record with this id already exists with other content")
        if await crud.id_taken(session, record_id):
            # Another user's record (docs/api.md §4): answered like any record that does not exist,
            # so nothing about it is revealed; the client makes a new UUID.
            raise NotFound(NOT_FOUND)
        record = _new_record(record_id, owner_id, data, seq)
        record.device = device
        session.add(record)
        try:
            await session.flush()
            await crud.replace_tags(session, record)
            await crud.reindex_text(session, record)
            await session.commit()
        except IntegrityError as exc:  # another process created the same id first
            await session.rollback()
            if await crud.get_owned(session, owner_id, record_id) is None:
                raise NotFound(NOT_FOUND) from exc  # someone else's: never revealed
            raise Conflict("This record id was created at the same time by another request; retry it") from exc
        return read(record)


def _new_record(record_id: str, owner_id: str, data: RecordCreate, seq: int) -> Record:
    now = _now()
    return Record(
        id=record_id,
        owner_id=owner_id,
        title=data.title,
        content=data.content,
        tags=data.tags,
        pinned=data.pinned,
        attachments=data.attachments,
        visibility=VISIBILITY_PRIVATE,
        version=1,
        text_version=1,
        change_seq=seq,
        created_at=now,
        updated_at=now,
    )


def set_text(record: Record, state: TextState, seq: int, device: str | None) -> None:
    """Give the record ``state`` as a new version (the caller keeps what it replaces, if anything)."""
    record.title, record.content, record.tags = state.title, state.content, list(state.tags)
    _bump(record, seq)
    record.text_version, record.device = record.version, device


def _text_changes(record: Record, changes: dict[str, Any]) -> bool:
    return any(name in changes and changes[name] != getattr(record, name) for name in TEXT_FIELDS)


async def apply_changes(
    session: AsyncSession, record: Record, seq: int, changes: dict[str, Any], device: str | None
) -> None:
    """Set ``changes`` on the record in the current write (a new version, a new change number),
    keeping the state before it as a revision when its text changes. Does not commit."""
    text_changed = _text_changes(record, changes)
    if text_changed:
        await history.keep_previous(session, record, changes.get("content", record.content))
    for name, value in changes.items():
        setattr(record, name, value)
    _bump(record, seq)
    if text_changed:
        record.text_version, record.device = record.version, device
    if "tags" in changes:
        await crud.replace_tags(session, record)
    if "title" in changes or "content" in changes:
        await session.flush()
        await crud.reindex_text(session, record)


def _side(version: int | None, state: TextState) -> ConflictSide:
    return ConflictSide(version=version, title=state.title, content=state.content, tags=state.tags)


@dataclass(frozen=True, slots=True)
class _Stale:
    """A change sent against an older (or unknown) version: what it was based on and meant."""

    based_on: int
    base: TextState | None
    yours: TextState
    sent_text: bool  # it sets title, content or tags, so there is an edit to keep
    device: str | None


async def _refuse(session: AsyncSession, record: Record, stale: _Stale, hunks: list[dict[str, Any]]) -> Conflict:
    """Keep both sides as revisions (committed), then the 409 with the current record and the conflict."""
    theirs = yours = None
    if stale.sent_text and stale.based_on <= record.version:  # a version the record never had keeps nothing
        theirs = await history.keep_state(session, record)
        yours = await history.keep_stale_edit(session, record, stale.yours, stale.based_on, stale.device)
        await session.commit()
    conflict = ConflictInfo(
        base=_side(stale.based_on, stale.base) if stale.base is not None else None,
        theirs=_side(record.version, history.state_of(record)),
        yours=_side(stale.based_on, stale.yours),
        hunks=[ConflictHunk.model_validate(h) for h in hunks],
        kept=ConflictKept(theirs=theirs, yours=yours),
    )
    if stale.based_on > record.version:
        detail = f"Version {stale.based_on} is newer than the record's ({record.version}); read it again"
    else:
        detail = (
            f"Stale version {stale.based_on}: the record is at version {record.version} and both changed the "
            "same part; resolve the hunks and send the result with the current version"
        )
    current = read(record).model_dump(mode="json")
    return Conflict(detail, extra={"record": current, "conflict": conflict.model_dump(mode="json")})


async def _merge_stale(
    session: AsyncSession, record: Record, changes: dict[str, Any], based_on: int, device: str | None
) -> tuple[dict[str, Any], _Stale]:
    """The changes to apply for a stale change merged three-way; a conflict is refused (409)."""
    base = await history.state_at(session, record, based_on) if based_on < record.version else None
    theirs = {name: getattr(record, name) for name in changes}
    outcome = merge.merge_change(base, theirs, changes)
    yours = merge.yours_state(base, history.state_of(record), changes)
    stale = _Stale(based_on, base, yours, any(name in changes for name in TEXT_FIELDS), device)
    if outcome.hunks or based_on > record.version:
        raise await _refuse(session, record, stale, outcome.hunks)
    return outcome.changes, stale


async def update_record(
    session: AsyncSession,
    owner_id: str,
    record_id: str,
    changes: dict[str, Any],
    expected_version: int | None,
    device: str | None = None,
) -> RecordUpdated:
    """Partial update with optimistic concurrency. A change based on an older version is merged
    three-way with what happened since (``merged: true``); overlapping edits are a 409 with the
    current record and the conflict, both sides kept as revisions. Without a version the change
    applies to the latest copy."""
    async with owned_write(session, owner_id, record_id) as (record, seq):
        stale = None
        if expected_version is not None and expected_version != record.version:
            changes, stale = await _merge_stale(session, record, changes, expected_version, device)
        if changes:
            await apply_changes(session, record, seq, changes, device)
        if stale is not None and stale.sent_text and stale.yours != history.state_of(record):
            await history.keep_stale_edit(session, record, stale.yours, stale.based_on, stale.device)
        await session.commit()
        return RecordUpdated.model_validate({**read(record).model_dump(), "merged": stale is not None})


async def delete_record(
    session: AsyncSession,
    owner_id: str,
    record_id: str,
    expected_version: int | None = None,
    device: str | None = None,
) -> RecordRead:
    """Soft delete: the row stays as a tombstone (text blanked, unpublished) for sync, its state
    before kept whole as a revision (the trash restores it). Deleting a tombstone again changes nothing."""
    async with owned_write(session, owner_id, record_id, tombstones=True) as (record, seq):
        if record.deleted_at is not None:
            return read(record)
        check_version(record, expected_version)
        await history.keep_previous(session, record, "", whole=True)
        record.deleted_at = _now()
        record.title = ""
        record.content = ""
        record.summary = None
        record.tags = []
        record.attachments = []
        record.visibility = VISIBILITY_PRIVATE
        record.slug = None
        _bump(record, seq)
        record.text_version, record.device = record.version, device
        await crud.replace_tags(session, record)
        await crud.reindex_text(session, record)
        await session.commit()
        return read(record)


async def set_published(
    session: AsyncSession, owner_id: str, record_id: str, published: bool, slug_bytes: int = 16
) -> RecordRead:
    """Publish with an unguessable slug (kept while published), or make private again."""
    async with owned_write(session, owner_id, record_id) as (record, seq):
        if (record.visibility == VISIBILITY_PUBLIC) != published:
            record.visibility = VISIBILITY_PUBLIC if published else VISIBILITY_PRIVATE
            record.slug = secrets.token_urlsafe(slug_bytes) if published else None
            _bump(record, seq)
            await session.commit()
        return read(record)


async def get_public(session: AsyncSession, slug: str) -> PublicRecord:
    record = await crud.get_published(session, slug) if SLUG.fullmatch(slug) else None
    if record is None:
        raise NotFound("No published record at this address")
    public = PublicRecord.model_validate(record)
    await end_read(session)
    return public
