"""HTTP routes of "Ask my records" in llm_service (docs/api.md §15): ``/ask``, and the index's
``/index/search``, ``/index/related/{id}`` and ``/index/status`` (mobile_service builds its
semantic and hybrid record search and related records on the last ones). Thin: validate, call
``ask`` / ``retrieval``, shape the answer. Every route reads the caller's own records only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from common.deps import CurrentUser
from common.errors import NotFound
from llm_service.app.deps import AskServiceDep, LLMSettingsDep, LLMUser, RetrievalDep, SearchUser
from llm_service.app.schemas import (
    AskRequest,
    AskResponse,
    IndexHit,
    IndexSearchRequest,
    IndexSearchResponse,
    IndexStatusRead,
    RelatedHit,
    RelatedResponse,
    error_responses,
)
from llm_service.app.sse import EventStreamResponse

PROVIDER_ERRORS = error_responses(400, 429, 502, 504)
index_api = APIRouter(prefix="/api/v1", tags=["ask my records"], responses=error_responses(401, 503))
RecordIdPath = Annotated[str, Path(max_length=64, pattern=r"^[0-9A-Za-z-]+$")]

ASK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`{answer, citations, usage}`; with `stream: true` a `text/event-stream` of "
        "`citations` (the retrieved sources), `delta`s, then `done` (`{citations, usage}`) or `error`",
        "content": {"text/event-stream": {}},
    },
    **PROVIDER_ERRORS,
}


@index_api.post("/ask", response_model=AskResponse, responses=ASK_RESPONSES)
async def ask(data: AskRequest, user: LLMUser, service: AskServiceDep) -> Any:
    """Answer a question from the caller's own records, citing them as ``[n]``."""
    if data.stream:
        return EventStreamResponse(await service.open_stream(user.id, data.question, data.limit, data.tag))
    return await service.answer(user.id, data.question, data.limit, data.tag)


@index_api.post("/index/search", response_model=IndexSearchResponse, responses=PROVIDER_ERRORS)
async def search_index(data: IndexSearchRequest, user: SearchUser, retrieval: RetrievalDep) -> IndexSearchResponse:
    """The caller's records nearest in meaning to ``query``, best first (one hit per record)."""
    sources = await retrieval.search(user.id, data.query, data.limit, data.tag)
    hits = [IndexHit(record_id=s.record_id, title=s.title, score=s.score, snippet=s.snippet) for s in sources]
    return IndexSearchResponse(model=retrieval.model, data=hits)


@index_api.get("/index/related/{record_id}", response_model=RelatedResponse, responses=error_responses(404))
async def related(
    record_id: RecordIdPath,
    user: CurrentUser,
    retrieval: RetrievalDep,
    limit: Annotated[int, Query(ge=1, le=50)] = 5,
) -> RelatedResponse:
    """The caller's other records nearest to this one (empty until it is indexed)."""
    found = await retrieval.related(user.id, record_id, limit)
    if found is None:
        raise NotFound("Record not found")
    return RelatedResponse(data=[RelatedHit(record_id=r, score=s) for r, s in found])


@index_api.get("/index/status", response_model=IndexStatusRead)
async def index_status(user: CurrentUser, retrieval: RetrievalDep, settings: LLMSettingsDep) -> IndexStatusRead:
    """How many of the caller's records are indexed, pending or failed."""
    status, dimensions = await retrieval.status(user.id)
    return IndexStatusRead(
        records=status.records,
        indexed=status.indexed,
        pending=status.pending,
        failed=status.failed,
        model=settings.llm_embedding_model,
        dimensions=dimensions,
    )
