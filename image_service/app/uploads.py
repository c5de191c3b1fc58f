"""Streaming multipart reader for uploads.

The request body is read chunk by chunk and fed to python-multipart's push parser; the ``file``
part goes straight to a scratch file while its sha256 is computed. The size limit is checked on
every chunk, so an oversized upload is refused (413) as soon as it crosses the limit, and memory
stays at one chunk whatever the file size. No framework form parsing buffers the body.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect, Request

from common.errors import BadRequest, PayloadTooLarge
from image_service.app.config import image_limit_detail

FILE_FIELD = "file"
TEXT_FIELDS = ("record_id",)
MAX_TEXT_FIELD_BYTES = 256


@dataclass
class ReceivedUpload:
    """The ``file`` part, spooled to ``path``, and the small text fields that came with it."""

    path: Path
    size: int = 0
    sha256: str = ""
    filename: str | None = None
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class _PartState:
    name: str | None = None
    filename: str | None = None
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    text: bytearray = field(default_factory=bytearray)


class _UploadCollector:
    """python-multipart callbacks: file bytes are queued per chunk, then written off the event loop."""

    def __init__(self, max_file_bytes: int) -> None:
        self.max_file_bytes = max_file_bytes
        self.part = _PartState()
        self.pending: list[bytes] = []
        self.file_seen = False
        self.file_size = 0
        self.filename: str | None = None
        self.digest = hashlib.sha256()
        self.fields: dict[str, str] = {}
        self.finished = False

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self.part = _PartState()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.part.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.part.header_value += data[start:end]

    def on_header_end(self) -> None:
        if bytes(self.part.header_field).lower() == b"content-disposition":
            _kind, options = parse_options_header(bytes(self.part.header_value))
            name = options.get(b"name")
            filename = options.get(b"filename")
            self.part.name = name.decode("utf-8", "replace") if name is not None else None
            self.part.filename = filename.decode("utf-8", "replace") if filename is not None else None
            if self.part.name == FILE_FIELD:
                if self.file_seen:
                    raise BadRequest("Send one file per upload")
                self.file_seen = True
                self.filename = self.part.filename
        self.part.header_field = bytearray()
        self.part.header_value = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self.part.name == FILE_FIELD:
            self.file_size += len(chunk)
            if self.file_size > self.max_file_bytes:
                raise PayloadTooLarge(image_limit_detail(self.max_file_bytes))
            self.digest.update(chunk)
            self.pending.append(chunk)
        elif self.part.name in TEXT_FIELDS:
            self.part.text += chunk
            if len(self.part.text) > MAX_TEXT_FIELD_BYTES:
                raise BadRequest(f"Field {self.part.name!r} is too long")
        # other parts are ignored

    def on_part_end(self) -> None:
        if self.part.name in TEXT_FIELDS and self.part.name is not None:
            value = bytes(self.part.text).decode("utf-8", "replace").strip()
            if "\x00" in value:  # PostgreSQL refuses NUL in text; SQLite would not: one answer for both
                raise BadRequest(f"Field {self.part.name!r} must not contain NUL characters")
            self.fields[self.part.name] = value

    def on_end(self) -> None:
        self.finished = True


def multipart_boundary(content_type: str | None) -> bytes:
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise BadRequest("Send the image as multipart/form-data with a 'file' field")
    return boundary


async def receive_upload(request: Request, scratch: Path, max_file_bytes: int) -> ReceivedUpload:
    """Stream the multipart body of ``request`` into ``scratch``; the caller deletes ``scratch``."""
    collector = _UploadCollector(max_file_bytes)
    parser = MultipartParser(multipart_boundary(request.headers.get("content-type")), collector.callbacks())  # type: ignore[arg-type]
    handle = await asyncio.to_thread(scratch.open, "wb")
    try:
        async for chunk in request.stream():
            if not chunk:
                continue
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise BadRequest("Malformed multipart body") from exc
            if collector.pending:
                data, collector.pending = b"".join(collector.pending), []
                await asyncio.to_thread(handle.write, data)
        parser.finalize()
    except ClientDisconnect as exc:
        raise BadRequest("The client went away during the upload") from exc
    finally:
        await asyncio.to_thread(handle.close)
    if not collector.file_seen:
        raise BadRequest("The multipart body has no 'file' field")
    if not collector.finished:
        raise BadRequest("The multipart body ended early")
    if collector.file_size == 0:
        raise BadRequest("The uploaded file is empty")
    return ReceivedUpload(
        path=scratch,
        size=collector.file_size,
        sha256=collector.digest.hexdigest(),
        filename=collector.filename,
        fields=collector.fields,
    )
