"""Embeddings through the gateway (docs/api.md §7): ``POST /api/v1/embeddings`` (our shape) and the
OpenAI-compatible ``POST /v1/embeddings`` (the provider's body as it is); both accounted to the
caller like chat."""

from __future__ import annotations

from typing import Any

from common.database import Database
from common.errors import BadRequest
from common.llm_client import LLMClient, Usage, estimate_tokens
from llm_service.app.openai_compat import checked_json_object
from llm_service.app.schemas import EMBEDDING_MAX_CHARS, EMBEDDING_MAX_INPUTS, EmbeddingResponse
from llm_service.app.usage import record_usage

USAGE_KIND = "embedding"


def estimated_usage(texts: list[str]) -> Usage:
    """Counts estimated here when the provider gave none."""
    return Usage.estimate(sum(estimate_tokens(t) for t in texts), 0)


async def embed(llm: LLMClient, db: Database, owner_id: str, texts: list[str]) -> EmbeddingResponse:
    result = await llm.embed(texts)
    usage = result.usage or estimated_usage(texts)
    await record_usage(db, owner_id, result.model, USAGE_KIND, usage)
    dimensions = len(result.vectors[0]) if result.vectors else 0
    return EmbeddingResponse(model=result.model, dimensions=dimensions, data=result.vectors)


def check_embeddings_body(body: Any) -> dict[str, Any]:
    """The OpenAI body's ``input`` (a string or a list of strings) within our limits."""
    body = checked_json_object(body)
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise BadRequest("'input' must be a non-empty string or a list of non-empty strings")
    if len(texts) > EMBEDDING_MAX_INPUTS or any(len(t) > EMBEDDING_MAX_CHARS for t in texts):
        raise BadRequest(f"At most {EMBEDDING_MAX_INPUTS} inputs of at most {EMBEDDING_MAX_CHARS} characters")
    if "model" in body and not (isinstance(body["model"], str) and body["model"]):
        raise BadRequest("'model' must be a non-empty string")
    return body


async def raw_embeddings(llm: LLMClient, db: Database, owner_id: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await llm.raw_embeddings(body)
    texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
    usage = Usage.of(answer.get("usage")) or estimated_usage(texts)
    await record_usage(db, owner_id, str(answer.get("model") or llm.embedding_model), "openai", usage)
    return answer
