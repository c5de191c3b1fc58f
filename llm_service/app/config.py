"""llm_service settings on top of the shared ones (docs/api.md §2, §7). Every limit has a default."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from common.config import REPO_ROOT, Settings
from common.errors import BadRequest
from common.llm_client import (
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    DEFAULT_EMBEDDING_MODEL,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT_SECONDS,
)

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "res" / "prompts"


class LLMSettings(Settings):
    """Provider, chat, text-task and rate-limit keys of llm_service."""

    # Provider (any OpenAI-compatible API). No LLM_API_KEY: calls answer 503 naming the keys.
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_model: str = DEFAULT_MODEL
    # The model of POST /api/v1/embeddings and the default of POST /v1/embeddings.
    llm_embedding_model: str = DEFAULT_EMBEDDING_MODEL
    # Comma-separated models callers may choose (sessions, /v1 calls); empty: any the provider has.
    llm_allowed_models: str = ""
    llm_timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    llm_connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS
    llm_max_retries: int = DEFAULT_MAX_RETRIES  # the SDK backs off between them on 429/5xx
    models_cache_seconds: int = 60

    # Chat sessions (Redis)
    chat_ttl_seconds: int = 7 * 24 * 3600
    chat_context_budget_tokens: int = 6000  # estimated tokens of history sent to the model
    chat_context_max_messages: int = 40
    chat_record_context_chars: int = 12_000  # records' text pulled in by record_ids, in total
    chat_max_record_ids: int = 10
    chat_message_max_chars: int = 32_000
    chat_system_prompt_max_chars: int = 8_000
    chat_list_max: int = 100
    # Hard bounds (409 conflict beyond them): history per session (user messages and replies), live
    # sessions per user. A session needs room for a question and its reply.
    chat_max_messages_per_session: int = Field(default=1000, ge=2)
    chat_max_sessions_per_user: int = Field(default=200, ge=1)
    chat_page_default: int = 100  # messages of GET /chat/sessions/{id} without ?limit (newest first page)
    chat_page_max: int = 500
    chat_default_system_prompt: str = "You are a helpful assistant for the user's notes and records."

    # Text tasks
    prompts_dir: str = str(PROMPTS_DIR)
    prompts_check_seconds: float = 1.0  # a prompt file's mtime is checked at most this often
    text_max_chars: int = 100_000
    text_max_tags: int = 10
    text_tag_max_chars: int = 32
    text_title_max_chars: int = 200

    # The record index (docs/api.md §15): background indexing of every record, in every process.
    index_enabled: bool = True
    index_worker_id: str | None = None  # default: "<hostname>:<port>:index"
    index_max_active: int = Field(default=4, ge=1)  # records embedded at once per process
    index_poll_seconds: float = 0.5
    index_lease_seconds: float = 60.0
    index_max_attempts: int = Field(default=5, ge=1)  # then ``failed``, retried much later
    index_retry_base_seconds: float = 2.0  # doubled after each failed attempt
    index_failed_retry_seconds: float = 600.0
    # Retrieval: chunks below this cosine similarity are not "relevant" (search, /ask, chat).
    index_min_score: float = 0.05
    index_search_limit: int = 100  # records a semantic search considers at most
    index_cache_mb: int = Field(default=256, ge=1)  # owners' vectors kept in memory per process
    index_search_rate_limit_per_minute: int = 300  # query embeddings per user (search, related)
    ask_max_source_chars: int = 1500  # of each numbered source the model sees
    chat_use_records_limit: int = Field(default=6, ge=1, le=20)  # sources of a chat message with use_records

    # Per-user limit on calls that reach the provider (chat messages, text tasks, /v1/chat/completions)
    llm_rate_limit_per_minute: int = 60

    @property
    def allowed_models(self) -> frozenset[str]:
        return frozenset(m.strip() for m in self.llm_allowed_models.split(",") if m.strip())

    def check_model(self, model: str) -> None:
        """400 when callers may not choose ``model`` (the default model is always allowed)."""
        allowed = self.allowed_models
        if allowed and model != self.llm_model and model not in allowed:
            raise BadRequest(f"Model '{model[:128]}' is not allowed here; choose one of: {', '.join(sorted(allowed))}")

    @field_validator("prompts_dir")
    @classmethod
    def _prompts_dir_from_repo(cls, value: str) -> str:
        """A relative PROMPTS_DIR is relative to the repository, wherever the service starts from."""
        path = Path(value)
        return str(path if path.is_absolute() else REPO_ROOT / path)
