"""Fixtures of llm_service's tests: in-process apps against the project's fake upstream, reached
over real HTTP through the real ``openai`` SDK (no monkeypatching)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llm_service.app.config import LLMSettings
from llm_service.main import build_app
from tests.auth import bearer


@pytest.fixture(scope="module")
def llm_app_factory(make_settings: Callable[..., Any], fake_llm_url: str) -> Callable[..., Any]:
    def _build(**overrides: Any) -> Any:
        values: dict[str, Any] = {
            "llm_base_url": fake_llm_url,
            "llm_api_key": "test-key",
            "llm_max_retries": 0,
            "llm_timeout_seconds": 1.5,
            "models_cache_seconds": 0,
            **overrides,
        }
        return build_app(make_settings(LLMSettings, "llm_service", **values), configure_logging=False)

    return _build


@pytest.fixture(scope="module")
def client(llm_app_factory: Callable[..., Any]) -> Iterator[TestClient]:
    with TestClient(llm_app_factory()) as c:
        yield c


@pytest.fixture
def auth_headers(issue_token: Callable[..., str]) -> Callable[..., dict[str, str]]:
    """Headers with a fresh access token for ``user_id`` (a new user when not given)."""

    def _headers(user_id: str | None = None) -> dict[str, str]:
        return bearer(issue_token(user_id))

    return _headers


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """``event:``/``data:`` blocks → [(event, parsed data)]; unnamed events are called "message"."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        raw = "\n".join(data)
        events.append((name, raw if raw == "[DONE]" else json.loads(raw)))
    return events
