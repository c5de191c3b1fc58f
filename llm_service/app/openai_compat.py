"""The OpenAI-compatible pass-through (``POST /v1/chat/completions``): the caller's body goes to the
provider as it is (default model filled in), the provider's answer comes back as it is, and the
call is accounted to the caller. Streams ask the provider for usage; the usage-only chunk is passed
on only when the client asked for it. Every error under ``/v1/`` (401, 415, 422, 429, 5xx, a
stream's ``error`` event) has OpenAI's body, ``{"error": {message, type, param, code}}``, so that
OpenAI's SDKs show the message."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import anyio

from common.database import Database
from common.errors import AppError, BadRequest
from common.llm_client import LLMClient, Usage, estimate_tokens
from llm_service.app.config import LLMSettings
from llm_service.app.sse import sse_data
from llm_service.app.usage import record_usage

USAGE_KIND = "openai"
OPENAI_PATH_PREFIX = "/v1/"


def openai_error_type(status: int) -> str:
    """OpenAI's ``type`` for a status: its SDKs pick the exception class by status, people read it."""
    if status >= 500:
        return "server_error"
    return {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error"
    )


def _validation_summary(errors: list[Any]) -> tuple[str, str | None]:
    """FastAPI's 422 list → one message and the first offending parameter (``messages.0.role``)."""
    parts, params = [], []
    for err in errors:
        loc = [str(p) for p in (err.get("loc") or []) if p != "body"] if isinstance(err, dict) else []
        params.append(".".join(loc) or None)
        message = str(err.get("msg", "invalid")) if isinstance(err, dict) else str(err)
        parts.append(f"{params[-1]}: {message}" if params[-1] else message)
    return "; ".join(parts) or "Invalid request", next((p for p in params if p), None)


def openai_error_body(status: int, body: dict[str, Any]) -> dict[str, Any]:
    """Our docs/api.md §4 body as OpenAI's error body; ``code`` keeps our machine code
    (``token_expired``, ``rate_limited``...), the request id stays in ``X-Request-ID``."""
    detail = body.get("detail")
    message, param = _validation_summary(detail) if isinstance(detail, list) else (str(detail), None)
    code = body.get("code")
    return {"error": {"message": message, "type": openai_error_type(status), "param": param, "code": code}}


def holds_lone_surrogate(value: Any) -> bool:
    """Whether a JSON value holds a string that is not valid Unicode (``"\\ud800"`` parses, then
    fails to encode on the way to the provider or the database)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(holds_lone_surrogate(k) or holds_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_lone_surrogate(item) for item in value)
    return False


def checked_json_object(body: Any) -> dict[str, Any]:
    """A /v1 body: a JSON object whose strings are valid Unicode (400 otherwise)."""
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object")
    if holds_lone_surrogate(body):
        raise BadRequest("The body holds a lone UTF-16 surrogate (such as \\ud800): text must be valid Unicode")
    return body


def check_chat_body(body: Any, settings: LLMSettings) -> dict[str, Any]:
    body = checked_json_object(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("'messages' must be a non-empty list of message objects")
    for message in messages:
        if not (isinstance(message.get("role"), str) and message["role"]):
            raise BadRequest("Each message needs a 'role' string")
        if not isinstance(message.get("content"), str | list | None):
            raise BadRequest("A message's 'content' is a string, a list of parts, or null")
    if "model" in body and not (isinstance(body["model"], str) and body["model"]):
        raise BadRequest("'model' must be a non-empty string")
    if "stream" in body and not isinstance(body["stream"], bool):
        # A truthy non-boolean (e.g. "false") would otherwise switch streaming on.
        raise BadRequest("'stream' must be true or false")
    if body.get("stream_options") is not None and not isinstance(body["stream_options"], dict):
        raise BadRequest("'stream_options' must be an object")
    if "model" in body:
        settings.check_model(body["model"])
    return body


def _prompt_estimate(body: dict[str, Any]) -> int:
    return sum(estimate_tokens(str(m.get("content") or "")) for m in body["messages"])


async def complete(llm: LLMClient, db: Database, owner_id: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await llm.raw_chat(body)
    usage = Usage.of(answer.get("usage"))
    if usage is None:
        text = "".join(str((c.get("message") or {}).get("content") or "") for c in answer.get("choices") or [])
        usage = Usage.estimate(_prompt_estimate(body), estimate_tokens(text))
    model = str(answer.get("model") or body.get("model") or llm.model)
    await record_usage(db, owner_id, model, USAGE_KIND, usage)
    return answer


async def open_stream(llm: LLMClient, db: Database, owner_id: str, body: dict[str, Any]) -> AsyncGenerator[str, None]:
    client_wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    upstream_body = {**body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
    chunks = await llm.open_raw_chat_stream(upstream_body)
    return _relay(chunks, llm, db, owner_id, body, client_wants_usage)


async def _relay(
    chunks: AsyncGenerator[dict[str, Any], None],
    llm: LLMClient,
    db: Database,
    owner_id: str,
    body: dict[str, Any],
    client_wants_usage: bool,
) -> AsyncGenerator[str, None]:
    usage: Usage | None = None
    model = str(body.get("model") or llm.model)
    text: list[str] = []
    recorded = False

    async def account() -> None:
        nonlocal recorded
        if not recorded:
            recorded = True
            final = usage or Usage.estimate(_prompt_estimate(body), estimate_tokens("".join(text)))
            await record_usage(db, owner_id, model, USAGE_KIND, final)

    try:
        async for chunk in chunks:
            model = str(chunk.get("model") or model)
            if chunk.get("usage"):
                usage = Usage.of(chunk["usage"])
            for choice in chunk.get("choices") or []:
                text.append(str((choice.get("delta") or {}).get("content") or ""))
            if not client_wants_usage:
                if not chunk.get("choices"):
                    continue  # the usage-only chunk the client did not ask for
                chunk.pop("usage", None)
            yield sse_data(chunk)
        await account()  # before [DONE]: a client that reads its usage next finds this call
        yield sse_data("[DONE]")
    except AppError as exc:
        yield sse_data(openai_error_body(exc.status_code, exc.body(None)))
    finally:
        with anyio.CancelScope(shield=True):
            await chunks.aclose()
            await account()
