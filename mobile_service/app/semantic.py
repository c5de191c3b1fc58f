"""Record search by meaning (docs/api.md §15): ``mode=semantic`` asks llm_service's index for the
caller's nearest records; ``mode=hybrid`` fuses those with the keyword search by reciprocal rank
(each list contributes ``1 / (RRF_K + rank)``). Records are then read here, owner-scoped and
filtered like any list, so a hit the index still holds for a record deleted a moment ago is never
shown. No database connection is held while llm_service embeds the query."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from common.api_clients import ServiceClient
from common.security import TokenUser
from mobile_service.app import crud, records
from mobile_service.app.ai_actions import call_llm_service
from mobile_service.app.schemas import Match, RecordListItem, RecordRead, RelatedRecord, RelatedRecords

SearchMode = Literal["keyword", "semantic", "hybrid"]
CANDIDATES = 100  # records each list contributes at most (the page comes from their fusion)
RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al.)
SNIPPET_CHARS = 240


async def _semantic_hits(
    client: ServiceClient, user: TokenUser, q: str, tag: str | None, timeout: float
) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"query": q, "limit": CANDIDATES}
    if tag is not None:
        body["tag"] = tag
    answer = await call_llm_service(client, user, "POST", "/api/v1/index/search", timeout=timeout, json=body)
    hits = answer.get("data")
    return (
        [h for h in hits if isinstance(h, dict) and isinstance(h.get("record_id"), str)]
        if isinstance(hits, list)
        else []
    )


def keyword_snippet(record: RecordRead, q: str) -> str:
    """The content around the first place a query word occurs (the start when none does)."""
    text = " ".join(record.content.split()) or record.title
    lowered = text.lower()
    at = min((i for i in (lowered.find(w) for w in q.lower().split()) if i >= 0), default=0)
    start = max(at - SNIPPET_CHARS // 3, 0)
    piece = text[start : start + SNIPPET_CHARS]
    return ("…" if start else "") + piece + ("…" if start + SNIPPET_CHARS < len(text) else "")


def fuse(keyword_ids: list[str], semantic_ids: list[str]) -> list[tuple[str, float]]:
    """Reciprocal rank fusion of two ranked id lists, best first (ties: keyword order, then semantic)."""
    scores: dict[str, float] = {}
    for ranked in (keyword_ids, semantic_ids):
        for rank, record_id in enumerate(ranked, 1):
            scores[record_id] = scores.get(record_id, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


async def search(
    session: AsyncSession,
    client: ServiceClient,
    user: TokenUser,
    filters: crud.ListFilters,
    q: str,
    mode: SearchMode,
    *,
    offset: int,
    limit: int,
    timeout: float,
) -> dict[str, Any]:
    """A page of ``{data, total_count}`` whose items carry ``match``."""
    keyword: list[RecordRead] = []
    if mode == "hybrid":
        keyword = (await crud.search_page(session, filters, q, offset=0, limit=CANDIDATES))["data"]
    hits = await _semantic_hits(client, user, q, filters.tag, timeout)
    snippets = {h["record_id"]: str(h.get("snippet") or "") for h in hits}
    if mode == "semantic":
        ranked = [(h["record_id"], float(h.get("score") or 0.0)) for h in hits]
    else:
        ranked = fuse([r.id for r in keyword], [h["record_id"] for h in hits])
    if filters.pinned is not None:  # the only filter llm_service did not apply
        allowed = await crud.live_ids(session, filters, [record_id for record_id, _ in ranked])
        ranked = [(record_id, score) for record_id, score in ranked if record_id in allowed]
    page = ranked[offset : offset + limit]
    found = {r.id: r for r in keyword}
    found.update(
        await crud.live_by_ids(session, filters, [record_id for record_id, _ in page if record_id not in found])
    )
    items = [
        RecordListItem(
            **found[record_id].model_dump(),
            match=Match(score=round(score, 4), snippet=snippets.get(record_id) or keyword_snippet(found[record_id], q)),
        )
        for record_id, score in page
        if record_id in found  # deleted a moment ago
    ]
    return {"data": items, "total_count": len(ranked)}


async def related(
    session: AsyncSession, client: ServiceClient, user: TokenUser, record_id: str, limit: int, timeout: float
) -> RelatedRecords:
    """The caller's other records nearest to this one (llm_service answers 404 for a record that is
    not the caller's, passed on as it is)."""
    record_id = records.parse_record_id(record_id)  # a UUID: nothing else reaches llm_service's path
    answer = await call_llm_service(
        client, user, "GET", f"/api/v1/index/related/{record_id}?limit={limit}", timeout=timeout
    )
    hits = [h for h in answer.get("data") or [] if isinstance(h, dict) and isinstance(h.get("record_id"), str)]
    found = await crud.live_by_ids(session, crud.ListFilters(owner_id=user.id), [h["record_id"] for h in hits])
    return RelatedRecords(
        data=[
            RelatedRecord(record=found[h["record_id"]], score=float(h.get("score") or 0.0))
            for h in hits
            if h["record_id"] in found and h["record_id"] != record_id
        ]
    )
