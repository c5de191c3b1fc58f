"""The LLM provider client: the official ``openai`` SDK's ``AsyncOpenAI`` behind one small class.

Any OpenAI-compatible provider fits (``LLM_BASE_URL``, ``LLM_API_KEY``, ``LLM_MODEL``). Timeouts and
the retry budget are explicit (settings); backoff on 429/5xx is the SDK's own. Every provider
problem leaves this module as a typed ``common.errors`` exception, never as an ``openai`` one:

- not configured → 503 ``service_unavailable`` naming the keys to set
- provider 429 after the SDK's retries → 429 ``rate_limited`` with the provider's ``Retry-After``
- provider refused the request (400/404/422, e.g. an unknown model) → 400 ``bad_request``
- timeout → 504 ``upstream_timeout``; any other provider failure → 502 ``upstream_error``

The SDK runs on its own HTTP stack, so the ``openai.*`` exceptions are what is caught here (a stream
cut mid-way arrives as ``openai.APIConnectionError``).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import openai
from openai import AsyncOpenAI

from common.errors import AppError, BadRequest, RateLimited, ServiceUnavailable, UpstreamError, UpstreamTimeout

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_CONNECT_TIMEOUT_SECONDS = 5.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_RETRY_AFTER_SECONDS = 5
UNCONFIGURED_DETAIL = (
    "The LLM provider is not configured: set LLM_API_KEY (and LLM_BASE_URL for a provider other than "
    "OpenAI, LLM_MODEL for its model) in llm_service/.env or the environment; "
    "`python main.py` starts a canned development upstream when LLM_API_KEY is unset"
)
_REFUSED_STATUSES = {400, 404, 422}


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one provider call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    estimated: bool = False

    @classmethod
    def of(cls, usage: Any) -> Usage | None:
        """From the SDK's usage object or a usage dict; None when there is none."""
        if not usage:
            return None

        def field(name: str) -> int:
            value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, 0)
            return int(value or 0)

        prompt, completion = field("prompt_tokens"), field("completion_tokens")
        return cls(prompt, completion, field("total_tokens") or prompt + completion)

    @classmethod
    def estimate(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        """Counts estimated here because the provider gave none (e.g. a stream cut short)."""
        return cls(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens, estimated=True)

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True, slots=True)
class ChatResult:
    content: str
    model: str
    usage: Usage | None


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    vectors: list[list[float]]
    model: str
    usage: Usage | None


@dataclass(frozen=True, slots=True)
class StreamPiece:
    """One event of a streamed answer: a text delta, or (last) the model and usage."""

    delta: str = ""
    model: str | None = None
    usage: Usage | None = None
    finish_reason: str | None = None


def estimate_tokens(text: str) -> int:
    """A provider-neutral estimate (about four characters per token) for budgets and missing usage."""
    return math.ceil(len(text) / 4) if text else 0


@contextmanager
def provider_errors(provider: str = "LLM provider") -> Iterator[None]:
    """Translate ``openai`` exceptions raised inside the block into ``common.errors`` (and log them)."""
    try:
        yield
    except openai.OpenAIError as exc:
        error = map_provider_error(exc, provider)
        logger.warning("%s call failed: %s → %s %s", provider, type(exc).__name__, error.status_code, error.detail)
        raise error from exc


def map_provider_error(exc: openai.OpenAIError, provider: str = "LLM provider") -> AppError:
    """The documented error for one ``openai`` exception."""
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamTimeout(f"The {provider} did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamError(f"The {provider} connection failed: {_short(exc)}")
    if isinstance(exc, openai.RateLimitError):
        return RateLimited(_retry_after(exc), f"The {provider} is rate limiting requests; retry later")
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code in _REFUSED_STATUSES:
            return BadRequest(f"The {provider} refused the request: {_short(exc)}")
        if exc.status_code in (401, 403):
            return UpstreamError(f"The {provider} rejected the API key; check LLM_API_KEY")
        return UpstreamError(f"The {provider} answered {exc.status_code}")
    return UpstreamError(f"The {provider} failed: {_short(exc)}")


def _short(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return message[:300]


def _retry_after(exc: openai.APIStatusError) -> int:
    headers = exc.response.headers if exc.response is not None else {}
    for name, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        value = headers.get(name)
        try:
            seconds = float(value) / divisor if value is not None else None
        except ValueError:
            seconds = None
        if seconds is not None and math.isfinite(seconds) and seconds > 0:
            return max(1, math.ceil(seconds))
    return DEFAULT_RETRY_AFTER_SECONDS


class LLMClient:
    """One pooled ``AsyncOpenAI`` client; opened by an app's lifespan and closed there."""

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        model: str = DEFAULT_MODEL,
        embedding_model: str = DEFAULT_EMBEDDING_MODEL,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> None:
        self.model = model
        self.embedding_model = embedding_model
        self.base_url = base_url or None
        self._sdk: AsyncOpenAI | None = None
        if api_key:
            self._sdk = AsyncOpenAI(
                api_key=api_key,
                base_url=self.base_url,
                timeout=openai.Timeout(timeout, connect=connect_timeout),
                max_retries=max_retries,
            )
        self._chat_params: frozenset[str] | None = None

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> LLMClient:
        """Build from any settings object with ``llm_*`` keys (missing ones take the defaults)."""
        values: dict[str, Any] = {
            "base_url": getattr(settings, "llm_base_url", None),
            "api_key": getattr(settings, "llm_api_key", None),
            "model": getattr(settings, "llm_model", None) or DEFAULT_MODEL,
            "embedding_model": getattr(settings, "llm_embedding_model", None) or DEFAULT_EMBEDDING_MODEL,
            "timeout": getattr(settings, "llm_timeout_seconds", DEFAULT_TIMEOUT_SECONDS),
            "connect_timeout": getattr(settings, "llm_connect_timeout_seconds", DEFAULT_CONNECT_TIMEOUT_SECONDS),
            "max_retries": getattr(settings, "llm_max_retries", DEFAULT_MAX_RETRIES),
        }
        values.update(overrides)
        return cls(**values)

    @property
    def configured(self) -> bool:
        return self._sdk is not None

    @property
    def sdk(self) -> AsyncOpenAI:
        """The configured SDK client; 503 naming the keys to set when there is none."""
        if self._sdk is None:
            raise ServiceUnavailable(UNCONFIGURED_DETAIL)
        return self._sdk

    async def aclose(self) -> None:
        if self._sdk is not None:
            await self._sdk.close()

    # ------------------------------------------------------------------ models

    async def list_models(self, *, probe_timeout: float | None = None) -> list[dict[str, Any]]:
        """The provider's models as plain dicts (``id``, ``object``, ``created``, ``owned_by``).
        ``probe_timeout``: one quick try (no retries) within that many seconds, for readiness checks."""
        sdk = self.sdk if probe_timeout is None else self.sdk.with_options(timeout=probe_timeout, max_retries=0)
        with provider_errors():
            page = await sdk.models.list()
            return [model.to_dict(mode="json") for model in page.data]

    # ------------------------------------------------------------------ chat

    async def chat(self, messages: list[dict[str, Any]], *, model: str | None = None, **params: Any) -> ChatResult:
        """One non-streamed completion; returns the answer text, the model and the usage."""
        with provider_errors():
            completion = await self.sdk.chat.completions.create(
                model=model or self.model, messages=messages, stream=False, **params
            )
        choice = completion.choices[0] if completion.choices else None
        content = (choice.message.content if choice is not None else None) or ""
        return ChatResult(
            content=content, model=completion.model or model or self.model, usage=Usage.of(completion.usage)
        )

    async def open_chat_stream(
        self, messages: list[dict[str, Any]], *, model: str | None = None, **params: Any
    ) -> ChatStream:
        """Start a streamed completion. Failures before the first byte (status, timeout) raise here,
        so a caller can still answer with a plain error status; later ones surface while iterating."""
        with provider_errors():
            stream = await self.sdk.chat.completions.create(
                model=model or self.model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                **params,
            )
        return ChatStream(stream, model or self.model)

    # ------------------------------------------------------------------ embeddings

    async def embed(self, texts: list[str], *, model: str | None = None) -> EmbeddingResult:
        """One vector per text, in order, from the embedding model (``LLM_EMBEDDING_MODEL``)."""
        with provider_errors():
            answer = await self.sdk.embeddings.create(
                model=model or self.embedding_model, input=texts, encoding_format="float"
            )
        ordered = sorted(answer.data, key=lambda item: item.index)
        vectors = [list(item.embedding) for item in ordered]
        if len(vectors) != len(texts):
            raise UpstreamError(f"The LLM provider answered {len(vectors)} embeddings for {len(texts)} texts")
        return EmbeddingResult(vectors, answer.model or model or self.embedding_model, Usage.of(answer.usage))

    async def raw_embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        """An ``/embeddings`` call with a client's body (default model filled in); the provider's JSON back."""
        known = {k: v for k, v in body.items() if k in ("input", "model", "encoding_format", "dimensions", "user")}
        extra = {k: v for k, v in body.items() if k not in known}
        known.setdefault("model", self.embedding_model)
        with provider_errors():
            answer = await self.sdk.embeddings.create(**known, extra_body=extra or None)
        return answer.to_dict(mode="json")

    # ------------------------------------------------------------------ OpenAI-compatible pass-through

    def split_chat_body(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Split a raw ``/chat/completions`` body into the SDK's keyword arguments and ``extra_body``."""
        if self._chat_params is None:
            parameters = inspect.signature(self.sdk.chat.completions.create).parameters
            self._chat_params = frozenset(
                p for p in parameters if p not in ("extra_headers", "extra_query", "extra_body")
            )
        known = {k: v for k, v in body.items() if k in self._chat_params}
        extra = {k: v for k, v in body.items() if k not in self._chat_params}
        known.setdefault("model", self.model)
        return known, extra

    async def raw_chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed ``/chat/completions`` call with a client's body; the provider's JSON back."""
        known, extra = self.split_chat_body({**body, "stream": False})
        with provider_errors():
            completion = await self.sdk.chat.completions.create(**known, extra_body=extra or None)
        return completion.to_dict(mode="json")

    async def open_raw_chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """A streamed ``/chat/completions`` call with a client's body; yields the provider's chunks as
        dicts. Opening errors raise before the generator is returned."""
        known, extra = self.split_chat_body({**body, "stream": True})
        with provider_errors():
            stream = await self.sdk.chat.completions.create(**known, extra_body=extra or None)

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            try:
                with provider_errors():
                    async for chunk in stream:
                        yield chunk.to_dict(mode="json")
            finally:
                await stream.close()

        return chunks()

    # ------------------------------------------------------------------ images

    async def generate_images(
        self,
        prompt: str,
        *,
        n: int = 1,
        size: str | None = None,
        model: str | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> list[str]:
        """``/images/generations``: returns the images as base64 strings (``b64_json``)."""
        params: dict[str, Any] = {"prompt": prompt, "n": n, "response_format": "b64_json"}
        if size:
            params["size"] = size
        if model:
            params["model"] = model
        with provider_errors("image provider"):
            result = await self.sdk.images.generate(**params, extra_headers=extra_headers)
        images = [item.b64_json for item in result.data or [] if item.b64_json]
        if not images:
            raise UpstreamError("The image provider returned no image data")
        return images


class ChatStream:
    """An open streamed completion: iterate for ``StreamPiece``s; ``close()`` drops the connection."""

    def __init__(self, stream: openai.AsyncStream[Any], model: str) -> None:
        self._stream = stream
        self.model = model

    async def pieces(self) -> AsyncIterator[StreamPiece]:
        """Text deltas as they arrive, then one last piece with the model and usage (when given).
        A failure mid-stream raises a ``common.errors`` exception."""
        usage: Usage | None = None
        finish: str | None = None
        with provider_errors():
            async for chunk in self._stream:
                if chunk.model:
                    self.model = chunk.model
                if chunk.usage is not None:
                    usage = Usage.of(chunk.usage)
                for choice in chunk.choices or []:
                    if choice.finish_reason:
                        finish = choice.finish_reason
                    if choice.delta is not None and choice.delta.content:
                        yield StreamPiece(delta=choice.delta.content)
        if finish is None:
            # The stream ended without a finish reason: treat it as cut, not as a complete answer.
            raise UpstreamError("The LLM provider's stream ended before the answer was complete")
        yield StreamPiece(model=self.model, usage=usage, finish_reason=finish)

    async def close(self) -> None:
        await self._stream.close()
