"""Records cut into pieces the embedding model sees one at a time: by heading and paragraph, up to
about ``CHUNK_CHARS`` characters, each piece after the first repeating a little of the one before
so a sentence on a boundary is found from either side."""

from __future__ import annotations

import re

CHUNK_CHARS = 1000
OVERLAP_CHARS = 150
_HEADING = re.compile(r"^#{1,6}\s")
_BLANK_LINES = re.compile(r"\n\s*\n")


def _blocks(content: str) -> list[str]:
    """Paragraphs, and a heading always starting a block of its own."""
    blocks: list[str] = []
    for paragraph in _BLANK_LINES.split(content.replace("\r\n", "\n")):
        current: list[str] = []
        for line in paragraph.split("\n"):
            if _HEADING.match(line) and current:
                blocks.append("\n".join(current))
                current = []
            current.append(line)
        blocks.append("\n".join(current))
    return [b.strip() for b in blocks if b.strip()]


def _windows(text: str) -> list[str]:
    """A block longer than a chunk, cut into overlapping windows (at a space where there is one)."""
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + CHUNK_CHARS, len(text))
        if end < len(text):
            space = text.rfind(" ", start + CHUNK_CHARS // 2, end)
            end = space if space > 0 else end
        pieces.append(text[start:end].strip())
        if end >= len(text):
            break
        start = max(end - OVERLAP_CHARS, start + 1)
    return [p for p in pieces if p]


def _tail(text: str) -> str:
    """The last words of a chunk (about ``OVERLAP_CHARS`` characters), repeated in the next one."""
    if len(text) <= OVERLAP_CHARS:
        return text
    tail = text[-OVERLAP_CHARS:]
    space = tail.find(" ")
    return tail[space + 1 :] if 0 <= space < OVERLAP_CHARS // 2 else tail


def chunk_text(title: str, content: str) -> list[str]:
    """The record's chunks of content, in order; a record with only a title is that one chunk,
    one with neither has none. (Each chunk is embedded with the title, ``embedding_input``.)"""
    blocks: list[str] = []
    for block in _blocks(content):
        blocks += _windows(block) if len(block) > CHUNK_CHARS else [block]
    chunks: list[str] = []
    current = ""
    for block in blocks:
        if current and len(current) + len(block) + 2 > CHUNK_CHARS:
            chunks.append(current)
            current = _tail(current) + "\n\n" + block if len(block) + OVERLAP_CHARS < CHUNK_CHARS else block
        else:
            current = f"{current}\n\n{block}" if current else block
    if current:
        chunks.append(current)
    return chunks or ([title.strip()] if title.strip() else [])


def embedding_input(title: str, chunk: str) -> str:
    """What the model embeds for a chunk: the record's title gives every piece its subject."""
    title = title.strip()
    return chunk if not title or chunk == title else f"{title}\n\n{chunk}"
