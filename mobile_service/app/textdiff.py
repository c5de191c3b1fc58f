"""Line diffs of record text (docs/api.md §16): the reverse deltas revisions are stored as, and
the unified and structured diffs the API answers. Pure functions over strings.

Lines keep their ``\\n`` (``split_lines``), so joining them gives the text back exactly. A common
prefix and suffix are cut off before ``difflib`` looks at the rest: a one-line edit of a long note
costs one pass over it, and difflib's matcher sees only the changed middle.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

Opcode = tuple[str, int, int, int, int]
CONTEXT_LINES = 3


def split_lines(text: str) -> list[str]:
    """The lines of ``text``, each with its ``\\n`` (the last one without, if the text has none)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _common_ends(a: list[str], b: list[str]) -> tuple[int, int]:
    """(lines equal at the start, lines equal at the end, not overlapping the start)."""
    most = min(len(a), len(b))
    head = 0
    while head < most and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < most - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    return head, tail


def line_opcodes(a: list[str], b: list[str]) -> list[Opcode]:
    """difflib's opcodes turning ``a`` into ``b`` (``equal``, ``replace``, ``delete``, ``insert``)."""
    head, tail = _common_ends(a, b)
    middle = difflib.SequenceMatcher(None, a[head : len(a) - tail], b[head : len(b) - tail]).get_opcodes()
    ops: list[Opcode] = [("equal", 0, head, 0, head)] if head else []
    for tag, i1, i2, j1, j2 in middle:
        ops.append((tag, i1 + head, i2 + head, j1 + head, j2 + head))
    if tail:
        ops.append(("equal", len(a) - tail, len(a), len(b) - tail, len(b)))
    return ops or [("equal", 0, 0, 0, 0)]


# ---------------------------------------------------------------- deltas (revision storage)


def encode_delta(old: str, new: str) -> str:
    """How to make ``old`` from ``new``: JSON ``[[start, end, text], ...]``, each replacing the
    lines ``new[start:end]`` by ``text``; lines not named are kept."""
    new_lines, old_lines = split_lines(new), split_lines(old)
    ops = [
        [i1, i2, "".join(old_lines[j1:j2])]
        for tag, i1, i2, j1, j2 in line_opcodes(new_lines, old_lines)
        if tag != "equal"
    ]
    return json.dumps(ops, ensure_ascii=False, separators=(",", ":"))


def apply_delta(new: str, delta: str) -> str:
    """The text ``encode_delta(old, new)`` was made from: ``old``."""
    lines = split_lines(new)
    out: list[str] = []
    position = 0
    for start, end, text in json.loads(delta):
        out.extend(lines[position:start])
        out.append(text)
        position = end
    out.extend(lines[position:])
    return "".join(out)


# ---------------------------------------------------------------- diffs (the API)


def _grouped(ops: list[Opcode], context: int) -> list[list[Opcode]]:
    """difflib's ``get_grouped_opcodes``: the changes with ``context`` equal lines around them."""
    if len(ops) == 1 and ops[0][0] == "equal":
        return []
    ops = list(ops)
    if ops[0][0] == "equal":
        tag, i1, i2, j1, j2 = ops[0]
        ops[0] = (tag, max(i1, i2 - context), i2, max(j1, j2 - context), j2)
    if ops[-1][0] == "equal":
        tag, i1, i2, j1, j2 = ops[-1]
        ops[-1] = (tag, i1, min(i2, i1 + context), j1, min(j2, j1 + context))
    groups: list[list[Opcode]] = []
    group: list[Opcode] = []
    for tag, i1, i2, j1, j2 in ops:
        if tag == "equal" and i2 - i1 > context * 2:
            group.append((tag, i1, min(i2, i1 + context), j1, min(j2, j1 + context)))
            groups.append(group)
            group = []
            i1, j1 = max(i1, i2 - context), max(j1, j2 - context)
        group.append((tag, i1, i2, j1, j2))
    if group and not (len(group) == 1 and group[0][0] == "equal"):
        groups.append(group)
    return groups


def diff_hunks(old: str, new: str, context: int = CONTEXT_LINES) -> list[dict[str, Any]]:
    """The changes from ``old`` to ``new`` as hunks: ``{old_start, old_lines, new_start,
    new_lines, lines: [{op: context|delete|add, text}]}`` (starts are 1-based, as in a unified diff)."""
    a, b = split_lines(old), split_lines(new)
    hunks = []
    for group in _grouped(line_opcodes(a, b), context):
        first, last = group[0], group[-1]
        lines: list[dict[str, str]] = []
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines += [{"op": "context", "text": line} for line in a[i1:i2]]
                continue
            lines += [{"op": "delete", "text": line} for line in a[i1:i2]]
            lines += [{"op": "add", "text": line} for line in b[j1:j2]]
        old_count, new_count = last[2] - first[1], last[4] - first[3]
        hunks.append(
            {
                "old_start": first[1] + (1 if old_count else 0),
                "old_lines": old_count,
                "new_start": first[3] + (1 if new_count else 0),
                "new_lines": new_count,
                "lines": lines,
            }
        )
    return hunks


_MARK = {"context": " ", "delete": "-", "add": "+"}


def _range(start: int, count: int) -> str:
    return str(start) if count == 1 else f"{start},{count}"


def unified_diff(hunks: list[dict[str, Any]], old_name: str, new_name: str) -> str:
    """``hunks`` as the text of a unified diff (empty when nothing changed)."""
    if not hunks:
        return ""
    out = [f"--- {old_name}\n", f"+++ {new_name}\n"]
    for hunk in hunks:
        old_range = _range(hunk["old_start"], hunk["old_lines"])
        out.append(f"@@ -{old_range} +{_range(hunk['new_start'], hunk['new_lines'])} @@\n")
        for line in hunk["lines"]:
            text = line["text"]
            out.append(_MARK[line["op"]] + text)
            if not text.endswith("\n"):
                out.append("\n\\ No newline at end of file\n")
    return "".join(out)
