"""HTTP routes of llm_service. Chat sessions, text tasks and the OpenAI-compatible API arrive with
the LLM issue."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["llm"])
