"""HTTP routes of mobile_service (docs/api.md §6, §16). Thin: validate, call the logic modules, shape the answer."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response, status
from starlette.convertors import StringConvertor, register_url_convertor

from common.deps import CurrentUser, DatabaseDep, SessionDep
from common.errors import BadRequest, PayloadTooLarge
from common.pagination import DEFAULT_LIMIT, Limit, Offset, Page, page_json, page_of
from mobile_service.app import ai_actions, crud, records, revisions, semantic, sync
from mobile_service.app.deps import HistoryPolicyDep, LlmServiceDep, MobileSettingsDep
from mobile_service.app.schemas import (
    PAGE_MAX,
    AiResult,
    AiTask,
    ConflictBody,
    PublicRecord,
    RecordCreate,
    RecordListItem,
    RecordRead,
    RecordUpdate,
    RecordUpdated,
    RelatedRecords,
    RevisionDiff,
    RevisionListItem,
    RevisionRead,
    SyncChanges,
    SyncPush,
    SyncPushResults,
    TrashItem,
    error_responses,
)
from mobile_service.app.semantic import SearchMode


class RecordIdConvertor(StringConvertor):
    """A record id segment: anything but ``trash``, so that PATCH or DELETE ``/records/trash`` is
    a 405 naming GET (the trash), not a call on a record named "trash"."""

    regex = "(?!trash(?:/|$))[^/]+"


register_url_convertor("record_id", RecordIdConvertor())

records_router = APIRouter(prefix="/api/v1/records", tags=["records"], responses=error_responses(400, 401, 413, 503))
sync_router = APIRouter(prefix="/api/v1/sync", tags=["sync"], responses=error_responses(400, 401, 413, 503))
public_router = APIRouter(prefix="/api/v1/public", tags=["public"], responses=error_responses(404, 503))
ONE_RECORD = error_responses(404)
CHANGE = error_responses(404, 409)
AI_ERRORS = error_responses(404, 429, 502, 504)

RecordId = Annotated[str, Path(max_length=64, description="The record's UUID")]
RevisionNumber = Annotated[str, Path(max_length=32, description="The revision's number (1, 2, ...)")]
Device = Annotated[
    str | None,
    Header(alias="X-Device", max_length=64, description="Optional name of the device making the change (§16)"),
]
IfMatch = Annotated[str | None, Header(max_length=64)]
STALE_CHANGE = {
    **error_responses(404),
    409: {
        "model": ConflictBody,
        "description": "Based on an older version and overlapping a newer change (conflict): the current record "
        "and the conflict's hunks; both sides are kept as revisions",
    },
}
SORT_PATTERN = r"^-?(updated_at|created_at|title)$"
_IF_MATCH = re.compile(r'^\s*(?:W/)?"?(\d{1,18})"?\s*$')


def etag(record: RecordRead) -> str:
    return f'"{record.version}"'


def expected_version(body_version: int | None, if_match: str | None) -> int | None:
    """The version a change is based on: ``version`` in the body, else ``If-Match`` (``"3"``)."""
    if body_version is not None:
        return body_version
    if if_match is None or if_match.strip() == "*":
        return None
    match = _IF_MATCH.match(if_match)
    if match is None:
        raise BadRequest('If-Match must carry the record version, e.g. If-Match: "3"')
    return int(match.group(1))


@records_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RecordRead,
    responses=error_responses(409, descriptions={409: "A client-made id already names another record (conflict)"}),
)
async def create_record(
    data: RecordCreate, user: CurrentUser, session: SessionDep, response: Response, device: Device = None
) -> RecordRead:
    record = await records.create_record(session, user.id, data, device)
    response.headers["ETag"] = etag(record)
    return record


@records_router.get("", response_model=Page[RecordListItem], responses=error_responses(429, 502, 504))
async def list_records(
    user: CurrentUser,
    db: DatabaseDep,
    llm: LlmServiceDep,
    settings: MobileSettingsDep,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 20,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=200, description="Full-text search over title and content")] = None,
    pinned: bool | None = None,
    mode: Annotated[
        SearchMode,
        Query(description="With q: keyword (full text), semantic (by meaning) or hybrid (both, rank-fused)"),
    ] = "keyword",
    sort: Annotated[
        str,
        Query(
            pattern=SORT_PATTERN,
            description="Ignored with q: title matches come first (PostgreSQL: by ts_rank), then the newest",
        ),
    ] = "-updated_at",
) -> Response:
    filters = crud.ListFilters(owner_id=user.id, tag=tag, pinned=pinned)
    if not (q and q.strip()):
        # The home screen's hot path: rows of the response's fields, written as JSON once.
        page = await crud.list_page(db, filters, offset=offset, limit=limit, sort=sort)
        return Response(page_json(page["data"], page["total_count"], offset, limit), media_type="application/json")
    # A session only for a search: the plain list (the home screen) needs none.
    async with db.session() as session:
        if mode != "keyword":
            page = await semantic.search(
                session,
                llm,
                user,
                filters,
                q.strip(),
                mode,
                offset=offset,
                limit=limit,
                timeout=settings.ai_timeout_seconds,
            )
        else:
            page = await crud.search_page(session, filters, q.strip(), offset=offset, limit=limit)
    # The items are validated models already: the page is serialised once, here, not validated
    # a second time against the response model.
    body = page_of(page["data"], page["total_count"], offset, limit).model_dump_json()
    return Response(body, media_type="application/json")


@records_router.get("/trash", response_model=Page[TrashItem], summary="Records deleted within RECORD_TRASH_DAYS")
async def trash(
    user: CurrentUser, session: SessionDep, policy: HistoryPolicyDep, offset: Offset = 0, limit: Limit = DEFAULT_LIMIT
) -> Page[TrashItem]:
    return await revisions.trash(session, user.id, policy, offset, limit)


@records_router.get("/{record_id:record_id}", response_model=RecordRead, responses=ONE_RECORD)
async def read_record(record_id: RecordId, user: CurrentUser, db: DatabaseDep) -> Response:
    record = await records.read_live(db, user.id, record_id)
    # The hot path: the model is already validated, so it is serialised once, here.
    return Response(record.model_dump_json(), media_type="application/json", headers={"ETag": etag(record)})


@records_router.get(
    "/{record_id:record_id}/related", response_model=RelatedRecords, responses=error_responses(404, 429, 502, 504)
)
async def related_records(
    record_id: RecordId,
    user: CurrentUser,
    session: SessionDep,
    llm: LlmServiceDep,
    settings: MobileSettingsDep,
    limit: Annotated[int, Query(ge=1, le=50)] = 5,
) -> RelatedRecords:
    """The caller's other records nearest in meaning to this one (empty until it is indexed)."""
    return await semantic.related(session, llm, user, record_id, limit, settings.ai_timeout_seconds)


@records_router.patch("/{record_id:record_id}", response_model=RecordUpdated, responses=STALE_CHANGE)
async def update_record(
    record_id: RecordId,
    data: RecordUpdate,
    user: CurrentUser,
    session: SessionDep,
    response: Response,
    if_match: IfMatch = None,
    device: Device = None,
) -> RecordUpdated:
    version = expected_version(data.version, if_match)
    record = await records.update_record(session, user.id, record_id, data.changes(), version, device)
    response.headers["ETag"] = etag(record)
    return record


@records_router.delete("/{record_id:record_id}", status_code=status.HTTP_204_NO_CONTENT, responses=CHANGE)
async def delete_record(
    record_id: RecordId, user: CurrentUser, session: SessionDep, if_match: IfMatch = None, device: Device = None
) -> Response:
    await records.delete_record(session, user.id, record_id, expected_version(None, if_match), device)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@records_router.get("/{record_id:record_id}/revisions", response_model=Page[RevisionListItem], responses=ONE_RECORD)
async def list_revisions(
    record_id: RecordId, user: CurrentUser, session: SessionDep, offset: Offset = 0, limit: Limit = DEFAULT_LIMIT
) -> Page[RevisionListItem]:
    """The record's revisions, newest first (also while it is in the trash)."""
    return await revisions.list_revisions(session, user.id, record_id, offset, limit)


@records_router.get("/{record_id:record_id}/revisions/{revision}", response_model=RevisionRead, responses=ONE_RECORD)
async def read_revision(
    record_id: RecordId, revision: RevisionNumber, user: CurrentUser, session: SessionDep
) -> RevisionRead:
    return await revisions.read_revision(session, user.id, record_id, revision)


@records_router.get(
    "/{record_id:record_id}/revisions/{revision}/diff", response_model=RevisionDiff, responses=ONE_RECORD
)
async def diff_revision(
    record_id: RecordId,
    revision: RevisionNumber,
    user: CurrentUser,
    session: SessionDep,
    against: Annotated[
        str, Query(pattern=r"^(current|[0-9]{1,16})$", description="current (default) or a revision number")
    ] = revisions.CURRENT,
) -> RevisionDiff:
    """From the revision to ``against``: a unified diff of the content and the same as hunks."""
    return await revisions.diff(session, user.id, record_id, revision, against)


@records_router.post(
    "/{record_id:record_id}/revisions/{revision}/restore",
    response_model=RecordRead,
    responses=CHANGE,
    summary="A new version with the revision's title, content and tags",
)
async def restore_revision(
    record_id: RecordId,
    revision: RevisionNumber,
    user: CurrentUser,
    session: SessionDep,
    response: Response,
    if_match: IfMatch = None,
    device: Device = None,
) -> RecordRead:
    version = expected_version(None, if_match)
    record = await revisions.restore_revision(session, user.id, record_id, revision, version, device)
    response.headers["ETag"] = etag(record)
    return record


@records_router.post(
    "/{record_id:record_id}/restore",
    response_model=RecordRead,
    responses=ONE_RECORD,
    summary="Undelete (from the trash)",
)
async def undelete(
    record_id: RecordId,
    user: CurrentUser,
    session: SessionDep,
    policy: HistoryPolicyDep,
    response: Response,
    device: Device = None,
) -> RecordRead:
    record = await revisions.undelete(session, user.id, record_id, policy, device)
    response.headers["ETag"] = etag(record)
    return record


@records_router.post(
    "/{record_id:record_id}/publish",
    response_model=RecordRead,
    responses=ONE_RECORD,
    summary="Publish with an unguessable slug",
)
async def publish(
    record_id: RecordId, user: CurrentUser, session: SessionDep, settings: MobileSettingsDep
) -> RecordRead:
    slug_bytes = settings.publish_slug_bytes
    return await records.set_published(session, user.id, record_id, True, slug_bytes)


@records_router.delete(
    "/{record_id:record_id}/publish", response_model=RecordRead, responses=ONE_RECORD, summary="Make private again"
)
async def unpublish(record_id: RecordId, user: CurrentUser, session: SessionDep) -> RecordRead:
    return await records.set_published(session, user.id, record_id, False)


@records_router.post(
    "/{record_id:record_id}/ai/{task}",
    response_model=AiResult,
    responses=AI_ERRORS,
    summary="Summarise, tag, title or polish",
)
async def ai_action(
    record_id: RecordId,
    task: AiTask,
    user: CurrentUser,
    session: SessionDep,
    settings: MobileSettingsDep,
    client: LlmServiceDep,
    apply: Annotated[bool, Query(description="tags/title: apply the suggestion to the record")] = False,
    language: Annotated[str | None, Query(max_length=32)] = None,
) -> AiResult:
    return await ai_actions.run(
        session,
        client,
        user,
        record_id,
        task,
        apply=apply,
        language=language,
        timeout=settings.ai_timeout_seconds,
    )


@public_router.get("/records/{slug}", response_model=PublicRecord, summary="A published record (no auth)")
async def public_record(
    slug: Annotated[str, Path(max_length=64)], session: SessionDep, response: Response
) -> PublicRecord:
    record = await records.get_public(session, slug)
    response.headers["Cache-Control"] = "no-cache"
    return record


@sync_router.get("/changes", response_model=SyncChanges)
async def sync_changes(
    user: CurrentUser,
    session: SessionDep,
    settings: MobileSettingsDep,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int | None, Query(ge=1, le=500)] = None,
) -> SyncChanges:
    size = min(limit or settings.sync_page_default, settings.sync_page_max)
    return await sync.changes(session, settings.secret_key, user.id, cursor, size)


@sync_router.post("/push", response_model=SyncPushResults)
async def sync_push(
    data: SyncPush, user: CurrentUser, session: SessionDep, settings: MobileSettingsDep, device: Device = None
) -> SyncPushResults:
    most = settings.sync_push_max_items
    if len(data.changes) > most:
        raise PayloadTooLarge(f"At most {most} changes per push; send the rest in another batch")
    return SyncPushResults(results=await sync.push(session, user.id, data.changes, device))


routers: list[APIRouter] = [records_router, sync_router, public_router]
