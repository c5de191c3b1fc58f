"""AI actions on a record (docs/api.md §6): llm_service's ``POST /api/v1/text/{task}`` through the one
``ServiceClient``, with the caller's token and request id.

``summarize`` stores the summary; ``tags`` and ``title`` return suggestions and apply them when
asked; ``polish`` returns text only. No database connection is held while the model thinks.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from common.api_clients import ServiceClient
from common.errors import AppError, UpstreamError
from common.security import TokenUser
from mobile_service.app import records
from mobile_service.app.schemas import MAX_TAGS, TAG_MAX_CHARS, TITLE_MAX_CHARS, AiResult, AiTask, normalise_tags


def _input_text(task: AiTask, title: str, content: str) -> str:
    if task == "polish":
        return content
    return f"{title}\n\n{content}".strip()


async def call_llm_service(
    client: ServiceClient, user: TokenUser, method: str, path: str, *, timeout: float, json: Any = None
) -> dict[str, Any]:
    """One call to llm_service with the caller's token; its JSON object, or its error passed on
    (status, code, detail, Retry-After) as the error shape of docs/api.md §4."""
    response = await client.request(method, path, token=user.token, json=json, timeout=timeout)
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        if isinstance(body, dict) and "code" in body:
            error = AppError(body.get("detail"), code=str(body["code"]))
            error.status_code = response.status_code if response.status_code >= 400 else 502
            if response.status_code == 401:
                error.headers["WWW-Authenticate"] = "Bearer"
            retry_after = response.headers.get("Retry-After")
            if retry_after:  # docs/api.md §4: a 429 (or 503) tells the client when to come back
                error.headers["Retry-After"] = retry_after
            raise error
        raise UpstreamError(f"llm_service answered {response.status_code}")
    if not isinstance(body, dict):
        raise UpstreamError("llm_service answered something other than a JSON object")
    return body


async def _call_llm(
    client: ServiceClient, user: TokenUser, task: AiTask, text: str, language: str | None, timeout: float
) -> Any:
    body = await call_llm_service(
        client, user, "POST", f"/api/v1/text/{task}", timeout=timeout, json={"text": text, "language": language}
    )
    if "result" not in body:
        raise UpstreamError("llm_service answered without a result")
    return body["result"]


def _shape(task: AiTask, result: Any) -> str | list[str]:
    if task == "tags":
        items = result if isinstance(result, list) else str(result).split(",")
        cleaned = (str(tag).strip().lower()[:TAG_MAX_CHARS] for tag in items)
        return normalise_tags(list(dict.fromkeys(tag for tag in cleaned if tag))[:MAX_TAGS])
    if not isinstance(result, str):
        raise UpstreamError("llm_service answered a result of the wrong type")
    if task == "title":
        first = next((line.strip() for line in result.splitlines() if line.strip()), "")
        return first[:TITLE_MAX_CHARS]
    return result


async def run(
    session: AsyncSession,
    client: ServiceClient,
    user: TokenUser,
    record_id: str,
    task: AiTask,
    *,
    apply: bool,
    language: str | None,
    timeout: float,
) -> AiResult:
    record = await records.get_live(session, user.id, record_id)
    title, content, current_tags = record.title, record.content, list(record.tags)
    await session.rollback()  # release the database before the slow call
    result = _shape(task, await _call_llm(client, user, task, _input_text(task, title, content), language, timeout))
    changes: dict[str, Any] = {}
    if task == "summarize":
        changes = {"summary": result}
    elif apply and task == "tags":
        changes = {"tags": list(dict.fromkeys([*current_tags, *result]))[:MAX_TAGS]}
    elif apply and task == "title" and result:
        changes = {"title": result}
    if not changes:
        return AiResult(task=task, result=result, applied=False)
    updated = await records.update_record(session, user.id, record_id, changes, None)
    return AiResult(task=task, result=result, applied=True, record=updated)
