"""llm_service — the LLM gateway, on :8003 (docs/api.md §7).

Owns: chat sessions (Redis), text tasks (prompts in ``res/prompts``), the OpenAI-compatible
``/v1`` pass-through and per-user token usage (the ``llm_usage`` table). The provider is any
OpenAI-compatible API reached through ``common.llm_client``. See README.md.
Run: ``python llm_service/main.py`` (or through the launcher, ``python main.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi import FastAPI

from common.app_factory import create_app, serve
from common.config import load_settings
from common.errors import ServiceUnavailable
from common.llm_client import LLMClient
from common.record_index.vectors import VectorIndex
from llm_service.app.config import LLMSettings
from llm_service.app.deps import LLMState
from llm_service.app.index_routes import index_api
from llm_service.app.indexer import RecordIndexer
from llm_service.app.openai_compat import OPENAI_PATH_PREFIX, openai_error_body
from llm_service.app.prompts import PromptStore
from llm_service.app.provider_models import provider_models
from llm_service.app.routes import api, openai_api

SERVICE = "llm_service"
READY_PROBE_TIMEOUT_SECONDS = 3.0


async def _open_provider(state: LLMState) -> None:
    settings: LLMSettings = state["settings"]  # type: ignore[assignment]
    state["llm"] = LLMClient.from_settings(settings)
    state["prompts"] = PromptStore(settings.prompts_dir, check_seconds=settings.prompts_check_seconds)
    state["vectors"] = VectorIndex(max_bytes=settings.index_cache_mb * 2**20)
    state["indexer"] = None
    if settings.index_enabled and state["llm"].configured and state["db"] is not None:
        indexer = RecordIndexer(state["db"], state["llm"], settings)
        await indexer.start()
        state["indexer"] = indexer


async def _close_provider(state: LLMState) -> None:
    indexer = state.get("indexer")
    if indexer is not None:
        await indexer.stop()
    llm = state.get("llm")
    if llm is not None:
        await llm.aclose()


async def _provider_ready(state: LLMState) -> None:
    """``/ready``: the provider is configured and lists its models (cached, so cheap)."""
    llm = state["llm"]
    if not llm.configured:
        raise ServiceUnavailable("LLM provider not configured: set LLM_API_KEY (and LLM_BASE_URL, LLM_MODEL)")
    settings: LLMSettings = state["settings"]  # type: ignore[assignment]
    await provider_models(llm, state["redis"], settings.models_cache_seconds, probe_timeout=READY_PROBE_TIMEOUT_SECONDS)


def build_app(settings: LLMSettings | None = None, **factory_kwargs: object) -> FastAPI:
    settings = settings or load_settings(LLMSettings, SERVICE)
    return create_app(
        settings,
        title="llm_service",
        description="LLM gateway: chat sessions, text tasks, token usage and an OpenAI-compatible API.",
        routers=[api, index_api, openai_api],
        on_startup=[_open_provider],
        on_shutdown=[_close_provider],
        ready_checks={"llm_provider": _provider_ready},
        error_shapes={OPENAI_PATH_PREFIX: openai_error_body},
        **factory_kwargs,  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    settings = load_settings(LLMSettings, SERVICE)
    serve(build_app(settings), settings)
