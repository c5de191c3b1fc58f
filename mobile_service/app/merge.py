"""Three-way merge of a change sent against an older version of a record (docs/api.md §16).

``base`` is the record's text at the version the client started from (a revision), ``theirs``
what the record holds now, ``yours`` the client's change. Rules, like git's for text:

- content by lines with ``merge3`` (Breezy's three-way merge): changes of different lines merge;
  changes of the same or adjacent lines are a conflict hunk;
- title: taken from the side that changed it; changed on both sides to different titles, a hunk;
- tags as sets: what the client added is added, what it removed is removed (a hunk only when the
  result would pass the limit of tags);
- pinned, summary and attachments have no history (no base): a change of one that differs from
  the record's is a hunk;
- with no base (the version is no longer kept, or was never the record's), every sent field
  that differs from the record's is a hunk.

Pure functions: the caller (``records.update_record``) loads the base and writes the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from merge3 import Merge3

from mobile_service.app.schemas import MAX_TAGS
from mobile_service.app.textdiff import split_lines

TEXT_FIELDS = ("title", "content", "tags")


@dataclass(frozen=True, slots=True)
class TextState:
    """What a revision keeps of a record: its title, content and tags."""

    title: str
    content: str
    tags: list[str]


@dataclass(slots=True)
class MergeOutcome:
    changes: dict[str, Any] = field(default_factory=dict)  # to set on the record: the merge's result
    hunks: list[dict[str, Any]] = field(default_factory=list)  # what could not be merged


def hunk(name: str, base: Any, theirs: Any, yours: Any, base_line: int | None = None) -> dict[str, Any]:
    return {"field": name, "base_line": base_line, "base": base, "theirs": theirs, "yours": yours}


def merge_content(base: str, theirs: str, yours: str) -> tuple[str, list[dict[str, Any]]]:
    """(the merged text, conflict hunks); the text is meaningful only without hunks."""
    lines_base, lines_theirs, lines_yours = split_lines(base), split_lines(theirs), split_lines(yours)
    merger = Merge3(lines_base, lines_theirs, lines_yours)
    out: list[str] = []
    hunks: list[dict[str, Any]] = []
    for region in merger.merge_regions():
        kind = region[0]
        if kind == "unchanged":
            out += lines_base[region[1] : region[2]]
        elif kind in ("a", "same"):
            out += lines_theirs[region[1] : region[2]]
        elif kind == "b":
            out += lines_yours[region[1] : region[2]]
        else:  # conflict: base[z1:z2] became theirs[a1:a2] and yours[b1:b2]
            _, z1, z2, a1, a2, b1, b2 = region  # type: ignore[misc]
            hunks.append(
                hunk(
                    "content",
                    "".join(lines_base[z1:z2]),
                    "".join(lines_theirs[a1:a2]),
                    "".join(lines_yours[b1:b2]),
                    base_line=z1 + 1,
                )
            )
    return "".join(out), hunks


def merge_tags(base: list[str], theirs: list[str], yours: list[str]) -> list[str]:
    """Theirs, minus what yours removed from the base, plus what yours added."""
    removed = set(base) - set(yours)
    kept = [tag for tag in theirs if tag not in removed]
    return kept + [tag for tag in yours if tag not in base and tag not in kept]


def _merge_title(base: TextState, theirs: str, yours: str, outcome: MergeOutcome) -> None:
    if yours in (base.title, theirs):
        return
    if theirs == base.title:
        outcome.changes["title"] = yours
    else:
        outcome.hunks.append(hunk("title", base.title, theirs, yours))


def _merge_text(base: TextState, theirs: dict[str, Any], changes: dict[str, Any], outcome: MergeOutcome) -> None:
    if "title" in changes:
        _merge_title(base, theirs["title"], changes["title"], outcome)
    if "content" in changes and changes["content"] != theirs["content"]:
        if theirs["content"] == base.content:
            outcome.changes["content"] = changes["content"]
        else:
            merged, hunks = merge_content(base.content, theirs["content"], changes["content"])
            outcome.hunks += hunks
            if not hunks and merged != theirs["content"]:
                outcome.changes["content"] = merged
    if "tags" in changes:
        tags = merge_tags(base.tags, theirs["tags"], changes["tags"])
        if len(tags) > MAX_TAGS:
            outcome.hunks.append(hunk("tags", base.tags, theirs["tags"], changes["tags"]))
        elif tags != theirs["tags"]:
            outcome.changes["tags"] = tags


def merge_change(base: TextState | None, theirs: dict[str, Any], changes: dict[str, Any]) -> MergeOutcome:
    """Merge ``changes`` (the fields a client sent, based on ``base``) into ``theirs`` (the
    record's current value of each of those fields)."""
    outcome = MergeOutcome()
    without_history = [name for name in changes if base is None or name not in TEXT_FIELDS]
    if base is not None:
        _merge_text(base, theirs, changes, outcome)
    for name in without_history:
        if changes[name] != theirs[name]:
            outcome.hunks.append(hunk(name, None, theirs[name], changes[name]))
    return outcome


def yours_state(base: TextState | None, current: TextState, changes: dict[str, Any]) -> TextState:
    """The text the client meant: its base with its changes (the current text where no base is known)."""
    start = base or current
    return TextState(
        title=changes.get("title", start.title),
        content=changes.get("content", start.content),
        tags=list(changes.get("tags", start.tags)),
    )
