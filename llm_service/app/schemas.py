"""Request and response bodies of llm_service, one schema per direction (docs/api.md §7)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from common.errors import ERROR_DESCRIPTIONS as COMMON_ERROR_DESCRIPTIONS
from common.errors import ErrorResponses, error_responses_with

# Hard ceilings of the schema; the tighter, configurable limits are checked in the logic.
TITLE_MAX = 200
MODEL_MAX = 128
ID_MAX = 64

# Request bodies take the JSON types their schema states: no 0/1 or "yes" for a boolean.
STRICT_BODY = ConfigDict(strict=True)


class ChatSessionCreate(BaseModel):
    model_config = STRICT_BODY

    title: str | None = Field(default=None, max_length=TITLE_MAX)
    model: str | None = Field(default=None, min_length=1, max_length=MODEL_MAX)
    system_prompt: str | None = None
    persistent: bool = False


class ChatSessionUpdate(BaseModel):
    model_config = STRICT_BODY

    title: str | None = Field(default=None, max_length=TITLE_MAX)
    persistent: bool | None = None


class ChatSessionRead(BaseModel):
    id: str
    title: str
    model: str
    persistent: bool
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None


class Citation(BaseModel):
    n: int = Field(description="The source's number, as the answer cites it: [n]")
    record_id: str
    title: str
    snippet: str


class ChatMessageRead(BaseModel):
    id: str
    role: Literal["user", "assistant"]
    content: str
    created_at: datetime
    # True for an assistant reply cut short (client gone, provider stream broken).
    incomplete: bool = False
    citations: list[Citation] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="An answer to a message sent with use_records: the caller's records it cites",
    )


class ChatSessionDetail(ChatSessionRead):
    system_prompt: str | None
    # One page of the history, oldest first: by default the newest ``CHAT_PAGE_DEFAULT`` messages.
    messages: list[ChatMessageRead]
    message_count: int = Field(description="Messages in the whole history")
    messages_offset: int = Field(description="Index (0 = first message) of messages[0]; pass it as ?before= for older")
    has_more_messages: bool = Field(description="Older messages exist before this page")


class ChatSessionList(BaseModel):
    data: list[ChatSessionRead]


# A record id: short, and without NUL (PostgreSQL refuses NUL in text, SQLite stores it: refused
# up front, a 422 on both).
RecordId = Annotated[str, Field(max_length=ID_MAX, pattern=r"^[^\x00]*$")]


def unique_ids(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


class MessageCreate(BaseModel):
    model_config = STRICT_BODY

    content: str = Field(min_length=1)
    stream: bool = False
    record_ids: list[RecordId] = Field(default_factory=list)
    use_records: bool = Field(default=False, description="Answer from the caller's records found for this message")

    _unique_record_ids = field_validator("record_ids")(unique_ids)


class ReplyRetry(BaseModel):
    """Ask again for the reply to the last user message (after a failed or cut call)."""

    model_config = STRICT_BODY

    stream: bool = False
    record_ids: list[RecordId] = Field(default_factory=list)
    use_records: bool = Field(default=False, description="Answer from the caller's records found for the message")

    _unique_record_ids = field_validator("record_ids")(unique_ids)


class UsageRead(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class MessageReply(BaseModel):
    message: ChatMessageRead
    usage: UsageRead | None


class TextTaskRequest(BaseModel):
    model_config = STRICT_BODY

    text: str = Field(min_length=1)
    language: str | None = Field(default=None, max_length=32)


class TextTaskResult(BaseModel):
    result: str | list[str]


EMBEDDING_MAX_INPUTS = 64
EMBEDDING_MAX_CHARS = 8_000


class EmbeddingRequest(BaseModel):
    model_config = STRICT_BODY

    input: list[Annotated[str, Field(min_length=1, max_length=EMBEDDING_MAX_CHARS)]] = Field(
        min_length=1, max_length=EMBEDDING_MAX_INPUTS, description="1 to 64 texts of at most 8,000 characters"
    )


class EmbeddingResponse(BaseModel):
    model: str
    dimensions: int
    data: list[list[float]]


QUESTION_MAX = 2_000
TAG_MAX = 32


class AskRequest(BaseModel):
    # Not strict as a whole: JSON Schema's integer includes 6.0, which strict mode refuses.
    model_config = ConfigDict(extra="ignore")

    question: str = Field(min_length=1, max_length=QUESTION_MAX)
    stream: StrictBool = False
    limit: int = Field(default=6, ge=1, le=20, description="Sources retrieved (1 to 20)")
    tag: str | None = Field(
        default=None, min_length=1, max_length=TAG_MAX, pattern=r"^[^\x00]*$", description="Only records with this tag"
    )


class AskResponse(BaseModel):
    answer: str
    citations: list[Citation] = Field(description="The retrieved sources the answer cites; empty when none")
    usage: UsageRead


class IndexSearchRequest(BaseModel):
    # Not strict as a whole: JSON Schema's integer includes 6.0, which strict mode refuses.
    model_config = ConfigDict(extra="ignore")

    query: str = Field(min_length=1, max_length=QUESTION_MAX)
    limit: int = Field(default=20, ge=1, le=100)
    tag: str | None = Field(default=None, min_length=1, max_length=TAG_MAX, pattern=r"^[^\x00]*$")


class IndexHit(BaseModel):
    record_id: str
    title: str
    score: float = Field(description="Cosine similarity of the record's best chunk to the query")
    snippet: str


class IndexSearchResponse(BaseModel):
    model: str
    data: list[IndexHit]


class RelatedHit(BaseModel):
    record_id: str
    score: float


class RelatedResponse(BaseModel):
    data: list[RelatedHit]


class IndexStatusRead(BaseModel):
    records: int = Field(description="The caller's live records")
    indexed: int = Field(description="Indexed with the current model at their current text")
    pending: int = Field(description="Waiting to be (re-)indexed")
    failed: int = Field(description="Failed repeatedly; retried later")
    model: str
    dimensions: int | None = Field(description="Of the stored vectors; null before the first is stored")


class ModelInfo(BaseModel):
    id: str
    owned_by: str | None = None
    created: int | None = None


class ModelList(BaseModel):
    data: list[ModelInfo]
    default_model: str


class UsageRow(BaseModel):
    day: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class UsageTotals(BaseModel):
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class UsageReport(BaseModel):
    since: str
    totals: UsageTotals
    by_day: list[UsageRow]


def usage_read(usage: Any) -> UsageRead | None:
    return None if usage is None else UsageRead(**usage.as_dict())


# This service's wording of docs/api.md §4 errors (401/404 come from common.errors).
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Well-formed but unusable input (bad_request)",
    409: "Over CHAT_MAX_SESSIONS_PER_USER or CHAT_MAX_MESSAGES_PER_SESSION (conflict)",
    413: "Body or text over its limit (payload_too_large)",
    429: "Too many calls; see Retry-After (rate_limited)",
    502: "The LLM provider failed (upstream_error)",
    503: "Redis or the LLM provider is down or unconfigured; the detail says which (service_unavailable)",
    504: "The LLM provider timed out (upstream_timeout)",
}

error_responses = error_responses_with(ERROR_DESCRIPTIONS)


class OpenAIError(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, authentication_error, rate_limit_error, server_error...")
    param: str | None = Field(default=None, description="The offending body field, when one is to blame")
    code: str | None = Field(default=None, description="Our machine code (docs/api.md §4), e.g. token_expired")


class OpenAIErrorBody(BaseModel):
    """The errors of the OpenAI-compatible ``/v1`` routes: OpenAI's own body, which its SDKs show."""

    error: OpenAIError


def openai_error_responses(*statuses: int) -> ErrorResponses:
    """OpenAPI ``responses`` of the ``/v1`` routes' errors, worded as ``error_responses``."""
    descriptions = {**COMMON_ERROR_DESCRIPTIONS, **ERROR_DESCRIPTIONS}
    return {status: {"model": OpenAIErrorBody, "description": descriptions[status]} for status in statuses}
