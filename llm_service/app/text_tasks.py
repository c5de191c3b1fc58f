"""Text tasks (summarize, tags, title, polish): prompt, one provider call, answer parsed into the
shape mobile_service stores (contract: tags → list[str], title → one line, others → str)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from common.errors import NotFound, PayloadTooLarge, UpstreamError
from common.llm_client import ChatResult, LLMClient, Usage, estimate_tokens
from llm_service.app.config import LLMSettings
from llm_service.app.prompts import PromptStore

TASKS = ("summarize", "tags", "title", "polish")
LANGUAGE_PROMPT = "language"

_LABEL_RE = re.compile(r"^\s*(summary|tags|title|polished text|polished)\s*[:：]\s*", re.IGNORECASE)
_TAG_SPLIT_RE = re.compile(r"[,，、;；\n]+")
_BULLET_RE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")
_QUOTES = "\"'`“”‘’「」『』«»"


@dataclass(frozen=True, slots=True)
class TextTaskOutcome:
    result: str | list[str]
    call: ChatResult
    usage: Usage  # the provider's counts, or an estimate when it gave none


def build_messages(prompts: PromptStore, task: str, text: str, language: str | None) -> list[dict[str, str]]:
    system = prompts.get(task)
    if language and language.strip():
        system += "\n" + prompts.get(LANGUAGE_PROMPT).replace("{language}", language.strip())
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


def strip_label(answer: str) -> str:
    return _LABEL_RE.sub("", answer.strip(), count=1).strip()


def parse_tags(answer: str, max_tags: int, max_chars: int) -> list[str]:
    """A comma/line separated list → normalised tags: trimmed, lower-case, no '#', unique, bounded."""
    tags: list[str] = []
    for raw in _TAG_SPLIT_RE.split(strip_label(answer)):
        tag = _BULLET_RE.sub("", raw).strip().strip(_QUOTES).lstrip("#").strip().rstrip(".").lower()
        tag = " ".join(tag.split())[:max_chars].strip()
        if tag and tag not in tags:
            tags.append(tag)
        if len(tags) == max_tags:
            break
    return tags


def parse_title(answer: str, max_chars: int) -> str:
    """The first non-empty line, without a label, Markdown heading marks, quotes or a final period."""
    line = next((ln for ln in strip_label(answer).splitlines() if ln.strip()), "")
    line = strip_label(line.strip().lstrip("#").strip())
    line = line.strip(_QUOTES).strip().rstrip(".。").strip()
    return " ".join(line.split())[:max_chars].strip()


def parse_result(task: str, answer: str, settings: LLMSettings) -> str | list[str]:
    if task == "tags":
        return parse_tags(answer, settings.text_max_tags, settings.text_tag_max_chars)
    if task == "title":
        return parse_title(answer, settings.text_title_max_chars)
    if task == "summarize":
        return strip_label(answer)
    return answer.strip()


async def run_text_task(
    llm: LLMClient, prompts: PromptStore, settings: LLMSettings, task: str, text: str, language: str | None
) -> TextTaskOutcome:
    if task not in TASKS:
        raise NotFound(f"Unknown text task '{task}'; choose one of: {', '.join(TASKS)}")
    if len(text) > settings.text_max_chars:
        raise PayloadTooLarge(f"text is longer than {settings.text_max_chars} characters")
    messages = build_messages(prompts, task, text, language)
    call = await llm.chat(messages)
    result = parse_result(task, call.content, settings)
    if not result:
        raise UpstreamError(f"The LLM provider gave an empty answer for '{task}'")
    usage = call.usage or Usage.estimate(
        sum(estimate_tokens(m["content"]) for m in messages), estimate_tokens(call.content)
    )
    return TextTaskOutcome(result, call, usage)
