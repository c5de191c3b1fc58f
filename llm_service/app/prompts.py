"""Prompt files of the text tasks (``res/prompts/<task>.txt``), re-read when a file changes.

The cache is keyed by the file's modification time and size, so an edited prompt is used without a
restart (each replica checks its own copy). A cached file is ``stat``-ed at most once every
``PROMPTS_CHECK_SECONDS`` (1 s), not on every request: requests in between use the cached text
without touching the disk, and an edit is picked up within that interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.errors import ServiceUnavailable


@dataclass(slots=True)
class _Cached:
    stamp: tuple[int, int]
    text: str
    checked_at: float


class PromptStore:
    def __init__(
        self, directory: str | Path, *, check_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.directory = Path(directory)
        self.check_seconds = check_seconds
        self._clock = clock
        self._cache: dict[str, _Cached] = {}

    def path_of(self, name: str) -> Path:
        return self.directory / f"{name}.txt"

    def get(self, name: str) -> str:
        """The prompt ``name``; its file is checked at most every ``check_seconds`` and read again
        when its mtime or size changed."""
        now = self._clock()
        cached = self._cache.get(name)
        if cached is not None and now - cached.checked_at < self.check_seconds:
            return cached.text
        path = self.path_of(name)
        try:
            stat = path.stat()
        except OSError as exc:
            raise ServiceUnavailable(f"Prompt file {path.name} is missing from llm_service/res/prompts") from exc
        stamp = (stat.st_mtime_ns, stat.st_size)
        if cached is None or cached.stamp != stamp:
            cached = _Cached(stamp, path.read_text(encoding="utf-8").strip(), now)
            self._cache[name] = cached
        else:
            cached.checked_at = now
        return cached.text
