"""Prompt files of the text tasks (``res/prompts/<task>.txt``), re-read when a file changes.

The cache is keyed by the file's modification time and size, so an edited prompt is used by the
next request without a restart (each replica checks its own copy; one ``stat`` per request).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.errors import ServiceUnavailable


@dataclass(frozen=True, slots=True)
class _Cached:
    stamp: tuple[int, int]
    text: str


class PromptStore:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._cache: dict[str, _Cached] = {}

    def path_of(self, name: str) -> Path:
        return self.directory / f"{name}.txt"

    def get(self, name: str) -> str:
        """The prompt ``name``; read again when its file changed since the last read."""
        path = self.path_of(name)
        try:
            stat = path.stat()
        except OSError as exc:
            raise ServiceUnavailable(f"Prompt file {path.name} is missing from llm_service/res/prompts") from exc
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(name)
        if cached is None or cached.stamp != stamp:
            cached = _Cached(stamp, path.read_text(encoding="utf-8").strip())
            self._cache[name] = cached
        return cached.text
