"""HTTP routes of llm_service (docs/api.md §7). Thin: validate, call the app modules, shape the answer.

- ``/api/v1/chat/...``: chat sessions and messages (``chat``, ``chat_store``)
- ``/api/v1/text/{task}``: text tasks (``text_tasks``)
- ``/api/v1/models``, ``/api/v1/usage``
- ``/v1/chat/completions``, ``/v1/models``: the OpenAI-compatible pass-through (``openai_compat``)
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response, status

from common.deps import CurrentUser, RedisDep
from llm_service.app import embeddings, openai_compat
from llm_service.app.chat import PreparedTurn
from llm_service.app.chat_store import ChatMessage, ChatSession
from llm_service.app.deps import (
    ChatServiceDep,
    ChatStoreDep,
    DatabaseDep,
    LLMDep,
    LLMSettingsDep,
    LLMUser,
    PromptsDep,
)
from llm_service.app.provider_models import provider_models, with_default_model
from llm_service.app.schemas import (
    EMBEDDING_MAX_CHARS,
    EMBEDDING_MAX_INPUTS,
    ChatMessageRead,
    ChatSessionCreate,
    ChatSessionDetail,
    ChatSessionList,
    ChatSessionRead,
    ChatSessionUpdate,
    EmbeddingRequest,
    EmbeddingResponse,
    MessageCreate,
    MessageReply,
    ModelInfo,
    ModelList,
    ReplyRetry,
    TextTaskRequest,
    TextTaskResult,
    UsageReport,
    error_responses,
    openai_error_responses,
    usage_read,
)
from llm_service.app.sse import EventStreamResponse
from llm_service.app.text_tasks import TASKS, run_text_task
from llm_service.app.usage import record_usage, usage_report

# Every route needs a token (401) and Redis (503); the provider's routes add its failures.
COMMON_ERRORS = error_responses(401, 503)
PROVIDER_ERRORS = error_responses(400, 429, 502, 504)
# The /v1 routes answer the same errors in OpenAI's body (openai_compat.openai_error_body).
OPENAI_COMMON_ERRORS = openai_error_responses(401, 503)
OPENAI_PROVIDER_ERRORS = openai_error_responses(400, 429, 502, 504)
MAX_MESSAGE_INDEX = 10**9
api = APIRouter(prefix="/api/v1", tags=["llm"], responses=COMMON_ERRORS)
openai_api = APIRouter(prefix="/v1", tags=["openai-compatible"], responses=OPENAI_COMMON_ERRORS)

MESSAGE_REPLY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`{message, usage}`; with `stream: true` a `text/event-stream` of `delta`, then `done` or `error`",
        "content": {"text/event-stream": {}},
    },
    **PROVIDER_ERRORS,
    **error_responses(404, 409, 413),
}


def session_read(session: ChatSession) -> ChatSessionRead:
    return ChatSessionRead(
        id=session.id,
        title=session.title,
        model=session.model,
        persistent=session.persistent,
        created_at=session.created_at,
        updated_at=session.updated_at,
        expires_at=session.expires_at,
    )


def message_read(message: ChatMessage) -> ChatMessageRead:
    return ChatMessageRead.model_validate(message, from_attributes=True)


# ---------------------------------------------------------------------------- chat sessions


@api.post(
    "/chat/sessions",
    status_code=status.HTTP_201_CREATED,
    response_model=ChatSessionRead,
    responses=error_responses(400, 409, 413),
)
async def create_session(data: ChatSessionCreate, user: CurrentUser, chat: ChatServiceDep) -> ChatSessionRead:
    return session_read(await chat.create_session(user.id, data))


@api.get("/chat/sessions", response_model=ChatSessionList)
async def list_sessions(
    user: CurrentUser,
    store: ChatStoreDep,
    settings: LLMSettingsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> ChatSessionList:
    sessions = await store.list(user.id, min(limit, settings.chat_list_max))
    return ChatSessionList(data=[session_read(s) for s in sessions])


@api.get("/chat/sessions/{session_id}", response_model=ChatSessionDetail, responses=error_responses(404))
async def read_session(
    session_id: str,
    user: CurrentUser,
    store: ChatStoreDep,
    settings: LLMSettingsDep,
    before: Annotated[int | None, Query(ge=0, le=MAX_MESSAGE_INDEX, description="Messages with a lower index")] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000, description="Page size (default CHAT_PAGE_DEFAULT)")] = None,
) -> ChatSessionDetail:
    """The session and one page of its history (oldest first); older pages with ``?before=messages_offset``."""
    session = await store.get(user.id, session_id)
    size = min(limit or settings.chat_page_default, settings.chat_page_max)
    messages, offset, total = await store.page(session.id, before=before, limit=size)
    return ChatSessionDetail(
        **session_read(session).model_dump(),
        system_prompt=session.system_prompt,
        messages=[message_read(m) for m in messages],
        message_count=total,
        messages_offset=offset,
        has_more_messages=offset > 0,
    )


@api.patch("/chat/sessions/{session_id}", response_model=ChatSessionRead, responses=error_responses(400, 404))
async def update_session(
    session_id: str, data: ChatSessionUpdate, user: CurrentUser, store: ChatStoreDep
) -> ChatSessionRead:
    title = data.title.strip() if data.title is not None else None
    session = await store.update(user.id, session_id, title=title or None, persistent=data.persistent)
    return session_read(session)


@api.delete("/chat/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404))
async def delete_session(session_id: str, user: CurrentUser, store: ChatStoreDep) -> Response:
    await store.delete(user.id, session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _answer(chat: ChatServiceDep, turn: PreparedTurn, stream: bool) -> Any:
    if stream:
        return EventStreamResponse(await chat.open_reply_stream(turn))
    message, usage = await chat.reply(turn)
    return MessageReply(message=message_read(message), usage=usage_read(usage))


@api.post("/chat/sessions/{session_id}/messages", response_model=MessageReply, responses=MESSAGE_REPLY_RESPONSES)
async def send_message(session_id: str, data: MessageCreate, user: LLMUser, chat: ChatServiceDep) -> Any:
    """Store the user's message, then answer it (``stream: true``: as server-sent events)."""
    turn = await chat.post_message(user.id, session_id, data.content, data.record_ids, data.use_records)
    return await _answer(chat, turn, data.stream)


@api.post("/chat/sessions/{session_id}/retry", response_model=MessageReply, responses=MESSAGE_REPLY_RESPONSES)
async def retry_reply(session_id: str, data: ReplyRetry, user: LLMUser, chat: ChatServiceDep) -> Any:
    """Answer the last user message again, after its reply failed or was cut short."""
    turn = await chat.prepare_retry(user.id, session_id, data.record_ids, data.use_records)
    return await _answer(chat, turn, data.stream)


# ---------------------------------------------------------------------------- text tasks, models, usage


@api.post("/embeddings", response_model=EmbeddingResponse, responses={**PROVIDER_ERRORS, **error_responses(413)})
async def create_embeddings(data: EmbeddingRequest, user: LLMUser, llm: LLMDep, db: DatabaseDep) -> EmbeddingResponse:
    """One vector per input text, in order, from ``LLM_EMBEDDING_MODEL``; usage recorded like chat."""
    return await embeddings.embed(llm, db, user.id, data.input)


@api.post("/text/{task}", response_model=TextTaskResult, responses={**PROVIDER_ERRORS, **error_responses(404, 413)})
async def text_task(
    # Documented as the known tasks; any other answers 404 (not 422), as the unknown-path rule (docs/api.md §4).
    task: Annotated[str, Path(json_schema_extra={"enum": list(TASKS)})],
    data: TextTaskRequest,
    user: LLMUser,
    llm: LLMDep,
    prompts: PromptsDep,
    settings: LLMSettingsDep,
    db: DatabaseDep,
) -> TextTaskResult:
    """``summarize`` / ``polish`` → text, ``title`` → one line, ``tags`` → a list of tags."""
    outcome = await run_text_task(llm, prompts, settings, task, data.text, data.language)
    await record_usage(db, user.id, outcome.call.model, f"text:{task}", outcome.usage)
    return TextTaskResult(result=outcome.result)


@api.get("/models", response_model=ModelList, responses=PROVIDER_ERRORS)
async def list_models(user: CurrentUser, llm: LLMDep, redis: RedisDep, settings: LLMSettingsDep) -> ModelList:
    """The provider's models, the default model (``LLM_MODEL``) always among them."""
    models = with_default_model(await provider_models(llm, redis, settings.models_cache_seconds), llm.model)
    return ModelList(data=[ModelInfo.model_validate(m) for m in models], default_model=llm.model)


@api.get("/usage", response_model=UsageReport)
async def my_usage(user: CurrentUser, db: DatabaseDep, days: Annotated[int, Query(ge=1, le=366)] = 30) -> UsageReport:
    """The caller's token usage by day and model over the last ``days`` days."""
    return await usage_report(db, user.id, days)


# ---------------------------------------------------------------------------- OpenAI-compatible


def passed_through_body(required: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` for a body that goes to the provider as it is: /docs shows the part the
    gateway itself checks."""
    schema = {"type": "object", "required": [required], "description": description, "properties": properties}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


MODEL_FIELD = {"type": "string", "minLength": 1}
CHAT_COMPLETIONS_OPENAPI = passed_through_body(
    "messages",
    "An OpenAI chat completions request; other OpenAI fields pass through",
    {
        "model": MODEL_FIELD,
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["role"],
                "properties": {
                    "role": {"type": "string", "minLength": 1},
                    "content": {"type": ["string", "array", "null"]},
                },
            },
        },
        "stream": {"type": "boolean"},
        "stream_options": {"type": ["object", "null"]},
    },
)
EMBEDDING_TEXT = {"type": "string", "minLength": 1, "maxLength": EMBEDDING_MAX_CHARS}
EMBEDDINGS_OPENAPI = passed_through_body(
    "input",
    "An OpenAI embeddings request; other OpenAI fields pass through",
    {
        "model": MODEL_FIELD,
        "input": {
            "anyOf": [
                EMBEDDING_TEXT,
                {"type": "array", "minItems": 1, "maxItems": EMBEDDING_MAX_INPUTS, "items": EMBEDDING_TEXT},
            ]
        },
    },
)


@openai_api.post(
    "/chat/completions",
    responses={
        200: {
            "description": "The provider's answer; with `stream: true` its `text/event-stream` chunks",
            "content": {"text/event-stream": {}},
        },
        **OPENAI_PROVIDER_ERRORS,
    },
    openapi_extra=CHAT_COMPLETIONS_OPENAPI,
)
async def chat_completions(
    body: Annotated[Any, Body()], user: LLMUser, llm: LLMDep, db: DatabaseDep, settings: LLMSettingsDep
) -> Any:
    """OpenAI ``/chat/completions`` with our access token as the API key; ``stream`` included."""
    checked = openai_compat.check_chat_body(body, settings)
    if checked.get("stream"):
        return EventStreamResponse(await openai_compat.open_stream(llm, db, user.id, checked))
    return await openai_compat.complete(llm, db, user.id, checked)


@openai_api.post(
    "/embeddings",
    responses={200: {"description": "The provider's answer, as it is"}, **OPENAI_PROVIDER_ERRORS},
    openapi_extra=EMBEDDINGS_OPENAPI,
)
async def openai_embeddings(body: Annotated[Any, Body()], user: LLMUser, llm: LLMDep, db: DatabaseDep) -> Any:
    """OpenAI ``/embeddings`` with our access token as the API key (``LLM_EMBEDDING_MODEL`` by default)."""
    return await embeddings.raw_embeddings(llm, db, user.id, embeddings.check_embeddings_body(body))


@openai_api.get("/models", responses=OPENAI_PROVIDER_ERRORS)
async def openai_models(user: CurrentUser, llm: LLMDep, redis: RedisDep, settings: LLMSettingsDep) -> dict[str, Any]:
    return {"object": "list", "data": await provider_models(llm, redis, settings.models_cache_seconds)}
