"""Request and response shapes of image_service (docs/api.md §8), one per direction."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from common.errors import error_responses_with
from common.models.image import GenerationResult, GenerationTask, Image

API_PREFIX = "/api/v1"
MAX_PROMPT_CHARS = 4000
# PostgreSQL refuses NUL in text (SQLite stores it): refused up front, the same on both (422).
NO_NUL = r"^[^\x00]*$"


class ImageRead(BaseModel):
    id: str
    mime: str
    width: int
    height: int
    size: int
    sha256: str
    url: str
    thumbnail_url: str
    created_at: datetime

    @classmethod
    def of(cls, image: Image) -> ImageRead:
        # Relative URLs: they work unchanged through mobile_service's and web_service's forwarding.
        base = f"{API_PREFIX}/images/{image.id}"
        return cls(
            id=image.id,
            mime=image.mime,
            width=image.width,
            height=image.height,
            size=image.size,
            sha256=image.sha256,
            url=f"{base}/content",
            thumbnail_url=f"{base}/thumbnail",
            created_at=image.created_at,
        )


class GenerationCreate(BaseModel):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, pattern=NO_NUL)
    n: int = Field(default=1, ge=1, le=4)
    size: str | None = Field(default=None, pattern=r"^[1-9][0-9]{1,3}x[1-9][0-9]{1,3}$", examples=["1024x1024"])


class GenerationResultRead(BaseModel):
    index: int
    status: str
    image_id: str | None
    error: str | None
    rating: int | None

    @classmethod
    def of(cls, result: GenerationResult) -> GenerationResultRead:
        return cls(
            index=result.index,
            status=result.status,
            image_id=result.image_id,
            error=result.error,
            rating=result.rating,
        )


class GenerationRead(BaseModel):
    id: str
    prompt: str
    n: int
    size: str
    status: str
    progress: int = Field(description="Results that succeeded or failed so far, in percent of n (0–100)")
    results: list[GenerationResultRead]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, task: GenerationTask, results: list[GenerationResult]) -> GenerationRead:
        return cls(
            id=task.id,
            prompt=task.prompt,
            n=task.n,
            size=task.size,
            status=task.status,
            progress=task.progress,
            results=[GenerationResultRead.of(r) for r in results],
            created_at=task.created_at,
            updated_at=task.updated_at,
        )


class RatingUpdate(BaseModel):
    rating: int = Field(ge=1, le=5)


# This service's wording of docs/api.md §4 errors (401/404 come from common.errors).
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Well-formed but unusable input, e.g. a malformed multipart body (bad_request)",
    409: "Not possible in the task's or result's current state (conflict)",
    413: "Over IMAGE_MAX_BYTES, or more pixels than IMAGE_MAX_PIXELS (payload_too_large)",
    415: "Not a JPEG, PNG, WebP or GIF, judged by content (unsupported_media_type)",
    429: "Too many unfinished generation tasks; see Retry-After (rate_limited)",
    503: "Redis, the storage or the image provider is down or unconfigured (service_unavailable)",
}

error_responses = error_responses_with(ERROR_DESCRIPTIONS)
