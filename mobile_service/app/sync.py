"""Sync for offline clients (docs/api.md §6): a change feed by the owner's change sequence and a batch push.

The cursor is opaque to clients: ``base64url("v1.<seq>.<mac>")`` where the MAC binds the number
to its owner with the service secret, so a cursor cannot be forged, edited or reused by another
user. Any cursor that does not verify (or points past the feed) is 400 ``invalid_cursor``: the
client must drop its sync state and start again without a cursor. So is a cursor from before
the newest purged tombstone of its owner (docs/api.md §16): that client missed a delete for good.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from common.database import end_read
from common.errors import AppError, BadRequest
from mobile_service.app import crud, records
from mobile_service.app.schemas import (
    ConflictInfo,
    PushItem,
    PushResult,
    RecordCreate,
    RecordRead,
    RecordUpdate,
    SyncChange,
    SyncChanges,
)

CURSOR_VERSION = "v1"
RESYNC = "Invalid sync cursor; discard the local sync state and resync from scratch (omit the cursor)"


def _mac(secret: str, owner_id: str, seq: int) -> str:
    message = f"{CURSOR_VERSION}:{owner_id}:{seq}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:24]


def encode_cursor(secret: str, owner_id: str, seq: int) -> str:
    raw = f"{CURSOR_VERSION}.{seq}.{_mac(secret, owner_id, seq)}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(secret: str, owner_id: str, cursor: str | None) -> int:
    """The change number a cursor stands for; an empty cursor is the start of the feed."""
    if not cursor:
        return 0
    try:
        if len(cursor) > 200:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, seq_text, mac = raw.split(".")
        seq = int(seq_text)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise BadRequest(RESYNC, code="invalid_cursor") from None
    if version != CURSOR_VERSION or seq < 0 or not hmac.compare_digest(mac, _mac(secret, owner_id, seq)):
        raise BadRequest(RESYNC, code="invalid_cursor")
    return seq


async def changes(session: AsyncSession, secret: str, owner_id: str, cursor: str | None, limit: int) -> SyncChanges:
    """Changes after the cursor, oldest first; each record appears once, in its latest state."""
    after = decode_cursor(secret, owner_id, cursor)
    if after:
        current, purged = await crud.change_counter(session, owner_id)
        if not purged <= after <= current:
            raise BadRequest(RESYNC, code="invalid_cursor")
    rows = await crud.changes_since(session, owner_id, after, limit + 1)
    page, has_more = rows[:limit], len(rows) > limit
    last = page[-1].change_seq if page else after
    result = SyncChanges(
        changes=[
            SyncChange(
                id=row.id,
                op="delete" if row.deleted_at is not None else "upsert",
                version=row.version,
                record=RecordRead.model_validate(row),
            )
            for row in page
        ],
        cursor=encode_cursor(secret, owner_id, last),
        has_more=has_more,
    )
    await end_read(session)
    return result


def _validation_detail(exc: ValidationError) -> list[dict[str, Any]]:
    return [{k: v for k, v in err.items() if k in ("loc", "msg", "type")} for err in exc.errors()]


def _conflict_result(record_id: str, exc: AppError) -> PushResult | None:
    """A 409 carrying the current record as a ``conflict`` result (with the merge's conflict, §16)."""
    current = exc.extra.get("record")
    if exc.status_code != 409 or current is None:
        return None
    conflict = exc.extra.get("conflict")
    return PushResult(
        id=record_id,
        status="conflict",
        record=RecordRead.model_validate(current),
        detail=exc.detail,
        conflict=ConflictInfo.model_validate(conflict) if conflict is not None else None,
    )


async def _apply_one(session: AsyncSession, owner_id: str, raw: Any, device: str | None) -> PushResult:
    item_id = str(raw.get("id")) if isinstance(raw, dict) and raw.get("id") is not None else None
    try:
        item = PushItem.model_validate(raw)
    except ValidationError as exc:
        return PushResult(id=item_id, status="error", detail=_validation_detail(exc))
    record_id = str(item.id)
    try:
        if item.op == "delete":
            record = await records.delete_record(session, owner_id, record_id, item.base_version or None, device)
            return PushResult(id=record_id, status="applied", record=record)
        found = await crud.get_owned(session, owner_id, record_id)
        existing = RecordRead.model_validate(found) if found is not None else None
        await session.rollback()  # the read above must not hold the database between items
        if existing is not None and existing.deleted_at is not None:
            return PushResult(id=record_id, status="conflict", record=existing, detail="The record was deleted")
        if existing is None:
            data = RecordCreate.model_validate({**item.fields, "id": record_id})
            record = await records.create_record(session, owner_id, data, device)
        elif item.base_version is None:
            # An upsert without a base is a (re)create: applied only when it changes nothing.
            record = await records.create_record(
                session, owner_id, RecordCreate.model_validate({**item.fields, "id": record_id})
            )
        else:
            update = RecordUpdate.model_validate(item.fields)
            if update.version is not None:
                raise BadRequest("Send the version as base_version, not inside fields")
            updated = await records.update_record(
                session, owner_id, record_id, update.changes(), item.base_version, device
            )
            status = "merged" if updated.merged else "applied"
            return PushResult(id=record_id, status=status, record=RecordRead.model_validate(updated.model_dump()))
        return PushResult(id=record_id, status="applied", record=record)
    except ValidationError as exc:
        return PushResult(id=record_id, status="error", detail=_validation_detail(exc))
    except AppError as exc:
        await session.rollback()
        conflict = _conflict_result(record_id, exc)
        if conflict is not None:
            return conflict
        return PushResult(id=record_id, status="error", detail={"code": exc.code, "message": exc.detail})


async def push(session: AsyncSession, owner_id: str, items: list[Any], device: str | None = None) -> list[PushResult]:
    """Apply each change in its own transaction: one bad item never fails the others. An upsert
    on an older ``base_version`` is merged (status ``merged``) or a ``conflict`` (§16)."""
    return [await _apply_one(session, owner_id, raw, device) for raw in items]
