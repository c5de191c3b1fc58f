"""image_service settings: storage, upload limits, thumbnails and the generation workers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from common.config import REPO_ROOT, Settings

# Room for the multipart boundaries, part headers and the small ``record_id`` field.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
MB = 1024 * 1024


def image_limit_detail(max_bytes: int) -> str:
    """The 413 of an oversized upload, in the units people use: "Images are limited to 10 MB"."""
    if max_bytes >= MB:
        size = f"{max_bytes / MB:.1f}".removesuffix(".0") + " MB"
    else:
        size = f"{max_bytes / 1024:.1f}".removesuffix(".0") + " KB"
    return f"Images are limited to {size}"


class ImageSettings(Settings):
    """image_service keys on top of the shared ones (docs/api.md §2, §8)."""

    # Where image bytes live (docs/api.md §8 "Storage"): this directory, or an S3-compatible
    # bucket. With s3 the directory only holds the scratch files of uploads in progress.
    image_storage: Literal["local", "s3"] = "local"
    image_storage_dir: str = str(REPO_ROOT / "data" / "images")
    s3_endpoint_url: str | None = None  # unset: AWS S3 itself (the region's endpoint)
    s3_bucket: str = "smart-record-images"
    s3_access_key_id: str | None = None  # unset: botocore's own chain (AWS_* variables, instance role)
    s3_secret_access_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    # unset: "path" with S3_ENDPOINT_URL (MinIO, Ceph, moto), botocore's "auto" without (AWS)
    s3_addressing_style: Literal["auto", "path", "virtual"] | None = None
    # Stored files larger than one part go up as a multipart upload, one part in memory at a time.
    s3_part_bytes: int = Field(default=8 * MB, ge=5 * MB)  # S3 refuses smaller parts (but the last)
    s3_connect_timeout_seconds: float = 2.0
    s3_read_timeout_seconds: float = 30.0
    s3_max_attempts: int = Field(default=3, ge=1)  # per call, botocore's "standard" retries
    s3_max_connections: int = Field(default=20, ge=1)
    image_max_bytes: int = 10 * 1024 * 1024
    # Decoded size cap (width × height): refuses decompression bombs before any pixel is decoded.
    image_max_pixels: int = 40_000_000
    # Frames of an animation, counted from the file's blocks before any frame is decoded.
    image_max_frames: int = 1000
    upload_chunk_bytes: int = 64 * 1024
    thumbnail_max_side: int = 320
    image_decode_workers: int = 2  # images decoded at once per process (bounds CPU and peak memory)
    # Of those, how many one user may hold (running or queued): their other uploads wait their turn.
    image_decode_per_user: int = 1
    cache_max_age_private_seconds: int = 3600
    # Short on purpose: a shared cache must stop serving an image soon after its record is unpublished.
    cache_max_age_public_seconds: int = 60

    # Image generation (docs/api.md §8). The provider keys are the same as llm_service's.
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    image_model: str = "dall-e-3"
    image_default_size: str = "1024x1024"
    provider_timeout_seconds: float = 120.0
    generation_max_tasks: int = 2  # tasks one process works on at once
    generation_max_calls: int = 4  # provider calls one process makes at once
    generation_max_attempts: int = 3  # per result
    generation_backoff_seconds: float = 0.5  # first retry delay, doubled on each attempt
    generation_lease_seconds: float = 30.0  # a dead worker's claim expires after this
    generation_poll_seconds: float = 1.0
    generation_worker_id: str | None = None  # default: "<hostname>:<port>"
    generation_workers_enabled: bool = True
    generation_max_open_per_user: int = 10  # unfinished tasks one user may have queued (else 429)

    @model_validator(mode="after")
    def _check_s3(self) -> ImageSettings:
        if self.image_storage == "s3" and not self.s3_bucket.strip():
            raise ValueError("IMAGE_STORAGE=s3 needs S3_BUCKET")
        if self.s3_endpoint_url is not None and not self.s3_endpoint_url.startswith(("http://", "https://")):
            raise ValueError("S3_ENDPOINT_URL must be an http:// or https:// URL")
        return self

    @property
    def upload_body_bytes(self) -> int:
        """The body limit of the upload route only: a maximal upload plus multipart framing (the
        upload parser then enforces IMAGE_MAX_BYTES on the file part itself). JSON routes keep
        the common MAX_BODY_BYTES."""
        return self.image_max_bytes + MULTIPART_OVERHEAD_BYTES

    @property
    def image_limit_detail(self) -> str:
        return image_limit_detail(self.image_max_bytes)
