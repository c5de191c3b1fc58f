"""llm_service — the LLM gateway: chat sessions, text tasks, OpenAI-compatible API, on :8003.

Chat sessions live in Redis; token usage is recorded in the database (SPEC §7).
Run: ``python llm_service/main.py`` (or through the launcher, ``python main.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi import FastAPI

from common.app_factory import create_app, serve
from common.config import Settings, load_settings
from llm_service.app.routes import router

SERVICE = "llm_service"


def build_app(settings: Settings | None = None, **factory_kwargs: object) -> FastAPI:
    settings = settings or load_settings(Settings, SERVICE)
    return create_app(
        settings,
        title="llm_service",
        description="LLM gateway: chat sessions, text tasks, OpenAI-compatible API.",
        routers=[router],
        **factory_kwargs,  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    settings = load_settings(Settings, SERVICE)
    serve(build_app(settings), settings)
