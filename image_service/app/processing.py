"""Pillow work: judge an image by its bytes, refuse bombs, normalise it, make thumbnails.

Every accepted image is decoded and re-encoded by the server (never stored as sent): EXIF
orientation is applied to the pixels, GPS data and XMP/comments (which may carry a location) are
dropped, other EXIF and the colour profile are kept. JPEGs keep their quantisation tables, so the
quality stays what the camera chose. Runs in a worker thread (CPU-bound).
"""

from __future__ import annotations

import asyncio
import hashlib
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from PIL import ExifTags, Image, ImageOps, ImageSequence, JpegImagePlugin, UnidentifiedImageError

from common.errors import AppError, PayloadTooLarge, UnsupportedMediaType

# Pillow format name → (mime, file extension). Anything else is refused with 415.
ACCEPTED_FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
    "GIF": ("image/gif", "gif"),
}
THUMBNAIL_MIME = "image/webp"
THUMBNAIL_EXTENSION = "webp"
# What survives re-encoding from ``Image.info``: rendering hints, not metadata.
KEPT_INFO_KEYS = ("transparency", "icc_profile", "duration", "loop", "background", "disposal")
HASH_CHUNK_BYTES = 1024 * 1024

# The pixel cap is enforced explicitly (``_open_accepted``); Pillow's own warning is noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


T = TypeVar("T")


class DecodePool:
    """A small thread pool for Pillow work: decoding is CPU- and memory-heavy (up to
    ``IMAGE_MAX_PIXELS`` × 4 bytes per image), so at most ``workers`` images are decoded at once.

    Fair between users: one owner has at most ``per_owner`` images in the pool (running or queued)
    at a time; the rest of their work waits outside it. So a user who sends many heavy uploads
    keeps the other workers, and the queue, free for everyone else's."""

    def __init__(self, workers: int, per_owner: int = 1) -> None:
        self._executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="image-decode")
        self._per_owner = max(1, per_owner)
        self._owners: dict[str, tuple[asyncio.Semaphore, int]] = {}  # semaphore, waiting + holding

    async def run(self, fn: Callable[..., T], *args: Any, owner: str) -> T:
        semaphore, users = self._owners.get(owner) or (asyncio.Semaphore(self._per_owner), 0)
        self._owners[owner] = (semaphore, users + 1)
        try:
            async with semaphore:
                return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            semaphore, users = self._owners[owner]
            if users == 1:
                del self._owners[owner]  # no entry outlives the owner's last job
            else:
                self._owners[owner] = (semaphore, users - 1)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True, slots=True)
class CleanImage:
    """An accepted image, re-encoded into ``path``."""

    path: Path
    mime: str
    extension: str
    width: int
    height: int
    size: int
    sha256: str


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _skip_sub_blocks(stream: BinaryIO) -> bool:
    """Skip a GIF data-sub-block chain; False when the file ends first."""
    while True:
        size = stream.read(1)
        if not size:
            return False
        if size[0] == 0:
            return True
        stream.seek(size[0], 1)


def _skip_colour_table(stream: BinaryIO, packed: int) -> None:
    if packed & 0x80:
        stream.seek(3 * 2 ** ((packed & 0x07) + 1), 1)


def _next_gif_block(stream: BinaryIO) -> tuple[int, bool]:
    """Move past the next block: (frames in it, 0 or 1; whether the walk can go on). The walk
    ends at the trailer, a truncation, or bytes that are not GIF blocks."""
    introducer = stream.read(1)
    if introducer == b"\x21":  # extension: a label, then sub-blocks
        return 0, bool(stream.read(1)) and _skip_sub_blocks(stream)
    if introducer == b"\x2c":  # image descriptor, its colour table, LZW code size, data
        descriptor = stream.read(9)
        if len(descriptor) < 9:
            return 0, False
        _skip_colour_table(stream, descriptor[8])
        return 1, bool(stream.read(1)) and _skip_sub_blocks(stream)
    return 0, False


def count_gif_frames(source: Path, stop_after: int) -> int:
    """The image descriptors of a GIF, counted by walking its blocks without decoding any pixel
    (Pillow's ``n_frames`` decodes every frame to count them); stops once past ``stop_after``.
    A truncated or malformed file ends the count where it breaks: Pillow judges it afterwards."""
    frames = 0
    with source.open("rb") as stream:
        header = stream.read(13)
        if len(header) < 13 or not header.startswith(b"GIF"):
            return 0
        _skip_colour_table(stream, header[10])
        going = True
        while going and frames <= stop_after:
            found, going = _next_gif_block(stream)
            frames += found
    return frames


def _open_accepted(source: Path, max_pixels: int, max_frames: int) -> Image.Image:
    """Open by content (only the four accepted decoders are tried) and refuse bombs before decoding."""
    try:
        image = Image.open(source, formats=list(ACCEPTED_FORMATS))
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"The image has more than {max_pixels} pixels") from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaType("The file is not a JPEG, PNG, WebP or GIF image") from exc
    except Exception as exc:  # Pillow raises many types for malformed input (found by fuzzing)
        raise UnsupportedMediaType("The image data is corrupt or truncated") from exc
    if image.format == "GIF" and count_gif_frames(source, max_frames) > max_frames:
        image.close()
        raise PayloadTooLarge(f"The animation has more than {max_frames} frames")
    try:
        frames = getattr(image, "n_frames", 1)  # WebP/PNG: from the headers; GIF: bounded above
    except Exception as exc:
        image.close()
        raise UnsupportedMediaType("The image data is corrupt or truncated") from exc
    if frames > max_frames:
        image.close()
        raise PayloadTooLarge(f"The animation has {frames} frames; the limit is {max_frames}")
    if image.width * image.height * frames > max_pixels:
        image.close()
        raise PayloadTooLarge(
            f"The image decodes to {image.width}×{image.height}×{frames} pixels; the limit is {max_pixels}"
        )
    return image


def _exif_without_location(image: Image.Image) -> bytes:
    exif = image.getexif()
    if ExifTags.Base.GPSInfo in exif:
        del exif[ExifTags.Base.GPSInfo]
    exif.pop(ExifTags.Base.Orientation, None)  # the pixels are already upright
    return exif.tobytes() if len(exif) else b""


def _save_still(original: Image.Image, fmt: str, target: Path) -> Image.Image:
    upright = ImageOps.exif_transpose(original)
    kept = {k: original.info[k] for k in KEPT_INFO_KEYS if k in original.info}
    exif = _exif_without_location(upright)
    upright.info = {}
    params: dict[str, Any] = {k: v for k, v in kept.items() if k in ("transparency", "icc_profile")}
    if fmt == "JPEG":
        if upright.mode not in ("RGB", "L", "CMYK"):
            upright = upright.convert("RGB")
        if isinstance(original, JpegImagePlugin.JpegImageFile) and original.quantization:
            params["qtables"] = original.quantization
            params["subsampling"] = JpegImagePlugin.get_sampling(original)
        else:
            params["quality"] = 92
        if exif:
            params["exif"] = exif
    elif fmt == "WEBP":
        params["quality"] = 90
        if exif:
            params["exif"] = exif
    elif fmt == "PNG":
        params["optimize"] = False
        if exif:
            params["exif"] = exif
    upright.save(target, format=fmt, **params)
    return upright


def _save_animation(original: Image.Image, fmt: str, target: Path) -> Image.Image:
    frames = [frame.copy() for frame in ImageSequence.Iterator(original)]
    params: dict[str, Any] = {k: original.info[k] for k in ("duration", "loop", "background") if k in original.info}
    for frame in frames:
        frame.info = {k: v for k, v in frame.info.items() if k in ("transparency", "duration", "disposal")}
    frames[0].save(target, format=fmt, save_all=True, append_images=frames[1:], **params)
    return frames[0]


def clean_image(source: Path, target: Path, max_pixels: int, max_frames: int) -> CleanImage:
    """Validate ``source`` and write its cleaned re-encoding to ``target``.

    Raises 415 for anything that is not an accepted, decodable image and 413 for bombs."""
    with _open_accepted(source, max_pixels, max_frames) as original:
        fmt = original.format or ""
        mime, extension = ACCEPTED_FORMATS[fmt]
        try:
            original.load()
            animated = getattr(original, "n_frames", 1) > 1
            saved = _save_animation(original, fmt, target) if animated else _save_still(original, fmt, target)
        except Image.DecompressionBombError as exc:
            raise PayloadTooLarge(f"The image has more than {max_pixels} pixels") from exc
        except AppError:
            raise
        except Exception as exc:  # malformed data or metadata: never a 500
            raise UnsupportedMediaType("The image data is corrupt or truncated") from exc
        width, height = saved.size
    return CleanImage(
        path=target,
        mime=mime,
        extension=extension,
        width=width,
        height=height,
        size=target.stat().st_size,
        sha256=file_sha256(target),
    )


def make_thumbnail(source: Path, target: Path, max_side: int) -> None:
    """A WebP no larger than ``max_side`` on either side, from the first frame."""
    with Image.open(source) as image:
        image.seek(0)
        frame = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P", "PA") else "RGB")
        frame.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        frame.save(target, format="WEBP", quality=80, method=4)
