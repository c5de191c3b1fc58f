"""The image provider: one ``/images/generations`` call per result, through the shared
``common.llm_client`` (the SDK's own retries are off: the worker retries each result itself)."""

from __future__ import annotations

import base64
import binascii

from common.errors import AppError, RateLimited, ServiceUnavailable, UpstreamError, UpstreamTimeout
from common.llm_client import LLMClient
from image_service.app.config import ImageSettings

RESULT_INDEX_HEADER = "X-Result-Index"


class ProviderError(Exception):
    """A failed provider call; ``retryable`` for timeouts, connection errors, 429 and 5xx.
    ``retry_after``: the provider's own wait hint in seconds (429), if any."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


def provider_configured(settings: ImageSettings) -> bool:
    return bool(settings.llm_api_key)


def require_provider(settings: ImageSettings) -> None:
    if not provider_configured(settings):
        raise ServiceUnavailable(
            "Image generation has no provider: set LLM_API_KEY (and LLM_BASE_URL for a non-OpenAI "
            "provider) in image_service/.env or the root .env"
        )


class ImageProvider:
    """Opened and closed by the app's lifespan."""

    def __init__(self, settings: ImageSettings) -> None:
        self.model = settings.image_model
        self._llm = LLMClient.from_settings(settings, timeout=settings.provider_timeout_seconds, max_retries=0)

    async def generate_one(self, prompt: str, size: str, index: int) -> bytes:
        """One image for result ``index`` (sent as ``X-Result-Index``), as raw bytes."""
        try:
            images = await self._llm.generate_images(
                prompt, n=1, size=size, model=self.model, extra_headers={RESULT_INDEX_HEADER: str(index)}
            )
        except RateLimited as exc:
            raise ProviderError(str(exc.detail), retryable=True, retry_after=exc.retry_after) from exc
        except (UpstreamTimeout, UpstreamError) as exc:
            raise ProviderError(str(exc.detail), retryable=True) from exc
        except AppError as exc:  # refused (400) or unconfigured (503): retrying will not help
            raise ProviderError(str(exc.detail), retryable=False) from exc
        try:
            return base64.b64decode(images[0], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProviderError("the image provider returned invalid base64", retryable=False) from exc

    async def aclose(self) -> None:
        await self._llm.aclose()
