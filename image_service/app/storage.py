"""Where image bytes live, behind one small interface.

Routes and logic only see ``ImageStorage``: keys are made by the server (``new_key``), never taken
from a client. ``LocalDiskStorage`` is the default. An S3-compatible backend is one more class
with the same five methods (``put_file`` → ``upload_file``/multipart upload, ``open_chunks`` →
``get_object`` body stream, ``exists`` → ``head_object``, ``delete`` → ``delete_object``) chosen
in ``build_storage`` from a setting; nothing else changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO, Protocol

from common.errors import NotFound

KEY_PATTERN = re.compile(r"^[a-z]+/[0-9a-f]{2}/[0-9a-f-]{36}\.(jpg|png|webp|gif)$")
READ_CHUNK_BYTES = 64 * 1024
STALE_TEMP_SECONDS = 3600


def new_key(kind: str, extension: str, name: str | None = None) -> str:
    """A server-made key such as ``originals/3f/3f2a…-….jpg`` (fanned out by the first 2 hex digits)."""
    name = name or str(uuid.uuid4())
    return f"{kind}/{name[:2]}/{name}.{extension}"


class ImageStorage(Protocol):
    """The operations image_service needs from a blob store."""

    def temp_file(self) -> Path:
        """A local scratch file for an upload in progress (an S3 backend uses a local temp dir)."""

    async def put_file(self, key: str, source: Path) -> None:
        """Store a local file under ``key`` (the source may be moved away)."""

    async def open_chunks(self, key: str) -> AsyncIterator[bytes]:
        """Open ``key`` (``NotFound`` when absent, raised here, before any byte is sent) and
        return an iterator over its bytes in chunks."""

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; absent keys are fine."""

    async def check(self) -> None:
        """Raise when the store is not usable (readiness probe)."""


class LocalDiskStorage:
    """Files under one directory. Writes go to a temporary name and are renamed into place, so a
    reader never sees half a file and two writers of the same key do not corrupt it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir = self.root / ".tmp"
        self.tmp_dir.mkdir(exist_ok=True)
        self._sweep_stale_temp_files()

    def _sweep_stale_temp_files(self) -> None:
        """Scratch files of uploads cut short by a crash (older than any live upload)."""
        cutoff = time.time() - STALE_TEMP_SECONDS
        for leftover in self.tmp_dir.iterdir():
            with contextlib.suppress(OSError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()

    def path_for(self, key: str) -> Path:
        if not KEY_PATTERN.match(key):
            raise ValueError(f"not a storage key: {key!r}")
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"storage key escapes the root: {key!r}")
        return path

    def temp_file(self) -> Path:
        """A fresh temporary file on the same filesystem as the store (so ``put_file`` is a rename)."""
        fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="part-")
        os.close(fd)
        return Path(name)

    async def put_file(self, key: str, source: Path) -> None:
        await asyncio.to_thread(self._put_file, self.path_for(key), source)

    def _put_file(self, target: Path, source: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
        shutil.move(source, staged)
        os.replace(staged, target)

    async def open_chunks(self, key: str) -> AsyncIterator[bytes]:
        path = self.path_for(key)
        try:
            handle = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError as exc:
            raise NotFound("Image not found") from exc
        return _read_chunks(handle)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path_for(key).is_file)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path_for(key).unlink, missing_ok=True)

    async def check(self) -> None:
        probe = await asyncio.to_thread(self.temp_file)
        probe.unlink()


async def _read_chunks(handle: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(handle.read, READ_CHUNK_BYTES):
            yield chunk
    finally:
        handle.close()


def build_storage(storage_dir: str) -> LocalDiskStorage:
    """The configured backend (local disk; an S3 class would be selected here)."""
    return LocalDiskStorage(storage_dir)
