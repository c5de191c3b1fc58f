"""The context sent to the model: bounded, while the stored history stays whole (docs/api.md §7).

System prompt first (always kept), then the attached records' text (bounded in characters, in a
separate system message so the instructions stay first), then the most recent turns that fit the
token budget and the message cap. The newest user message is always sent. Assistant replies that
were cut short are left out: the model sees only complete answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.llm_client import estimate_tokens
from llm_service.app.chat_store import ChatMessage
from llm_service.app.records import RecordText


def records_block(intro: str, records: Sequence[RecordText], max_chars: int) -> str | None:
    if not records:
        return None
    parts = [intro]
    remaining = max_chars
    for record in records:
        if remaining <= 0:
            break
        body = f"## {record.title or 'Untitled'} (record {record.id})\n{record.content}"
        if len(body) > remaining:
            body = body[:remaining] + " …[truncated]"
        parts.append(body)
        remaining -= len(body)
    return "\n\n".join(parts)


def recent_turns(history: Sequence[ChatMessage], budget_tokens: int, max_messages: int) -> list[ChatMessage]:
    """The newest messages that fit the budget, oldest first; the newest one always."""
    turns = [m for m in history if not (m.role == "assistant" and m.incomplete)]
    chosen: list[ChatMessage] = []
    used = 0
    for message in reversed(turns):
        cost = estimate_tokens(message.content)
        if chosen and (used + cost > budget_tokens or len(chosen) >= max_messages):
            break
        chosen.append(message)
        used += cost
    chosen.reverse()
    return chosen


def build_context(
    system_prompt: str,
    history: Sequence[ChatMessage],
    *,
    budget_tokens: int,
    max_messages: int,
    records_text: str | None = None,
) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt}]
    if records_text:
        messages.append({"role": "system", "content": records_text})
    messages.extend({"role": m.role, "content": m.content} for m in recent_turns(history, budget_tokens, max_messages))
    return messages
