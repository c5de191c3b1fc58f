"""The pure parts of record history: line deltas (revision storage), diffs and the three-way merge."""

from __future__ import annotations

import random

from mobile_service.app.merge import TextState, merge_change, merge_content, merge_tags
from mobile_service.app.textdiff import apply_delta, diff_hunks, encode_delta, split_lines, unified_diff

LINES = ["alpha\n", "beta\n", "gamma\n", "\n", "delta", "会议纪要\n", "x\r\n", ""]


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(LINES) for _ in range(rng.randint(0, 30)))


def patched(old: str, hunks: list[dict]) -> str:
    """Apply structured diff hunks to ``old``, checking every context and deleted line."""
    lines, out, position = split_lines(old), [], 0
    for hunk in hunks:
        start = hunk["old_start"] - 1 if hunk["old_lines"] else hunk["old_start"]
        out += lines[position:start]
        position = start
        for line in hunk["lines"]:
            if line["op"] == "add":
                out.append(line["text"])
                continue
            assert lines[position] == line["text"]
            if line["op"] == "context":
                out.append(line["text"])
            position += 1
    return "".join(out + lines[position:])


def test_split_lines_gives_the_text_back_exactly() -> None:
    for text in ["", "a", "a\n", "a\n\nb", "\n\n", "x\r\ny"]:
        assert "".join(split_lines(text)) == text


def test_a_delta_rebuilds_the_older_text_for_any_pair() -> None:
    rng = random.Random(17)
    for _ in range(2000):
        old, new = random_text(rng), random_text(rng)
        assert apply_delta(new, encode_delta(old, new)) == old


def test_a_one_line_edit_of_a_long_note_is_a_small_delta() -> None:
    note = "".join(f"Line {n} of a long note about the garden, the budget and the week.\n" for n in range(160))
    edited = note.replace("Line 75 of", "Line 75 (edited) of")
    delta = encode_delta(note, edited)
    assert len(note) > 10_000 and len(delta.encode()) < 120
    assert apply_delta(edited, delta) == note


def test_diff_hunks_turn_the_old_text_into_the_new_and_render_as_a_unified_diff() -> None:
    rng = random.Random(3)
    for _ in range(1000):
        old, new = random_text(rng), random_text(rng)
        hunks = diff_hunks(old, new)
        assert patched(old, hunks) == new
        assert (unified_diff(hunks, "a", "b") == "") == (old == new)
    text = unified_diff(diff_hunks("one\ntwo\nthree\n", "one\n2\nthree\n"), "revision 1", "current")
    assert text == "--- revision 1\n+++ current\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n"
    assert "\\ No newline at end of file" in unified_diff(diff_hunks("a", "b"), "x", "y")


def test_edits_of_different_paragraphs_merge_and_of_one_line_conflict() -> None:
    base = "# Plan\n\nBuy milk.\n\nCall Ann.\n\nRead a book.\n"
    theirs = base.replace("Buy milk.", "Buy oat milk.")
    yours = base.replace("Read a book.", "Read two books.")
    merged, hunks = merge_content(base, theirs, yours)
    assert hunks == [] and merged == "# Plan\n\nBuy oat milk.\n\nCall Ann.\n\nRead two books.\n"
    merged, hunks = merge_content(base, theirs, base.replace("Buy milk.", "Buy no milk."))
    assert hunks == [
        {
            "field": "content",
            "base_line": 3,
            "base": "Buy milk.\n",
            "theirs": "Buy oat milk.\n",
            "yours": "Buy no milk.\n",
        }
    ]


def test_edits_at_both_ends_of_a_long_record_merge() -> None:
    base = "".join(f"paragraph {n}\n\n" for n in range(5000))
    theirs, yours = "new first line\n" + base, base + "new last line\n"
    merged, hunks = merge_content(base, theirs, yours)
    assert hunks == [] and merged == "new first line\n" + base + "new last line\n"


def test_tags_merge_as_sets_and_title_only_when_one_side_changed_it() -> None:
    assert merge_tags(["a", "b", "c"], ["a", "b", "c", "d"], ["a", "c", "e"]) == ["a", "c", "d", "e"]
    base = TextState("Title", "body\n", ["a"])
    theirs = {"title": "Title", "content": "body\n", "tags": ["a", "t"]}
    outcome = merge_change(base, theirs, {"title": "Mine", "tags": ["a", "y"]})
    assert outcome.hunks == [] and outcome.changes == {"title": "Mine", "tags": ["a", "t", "y"]}
    both = merge_change(base, {**theirs, "title": "Theirs"}, {"title": "Mine"})
    assert [h["field"] for h in both.hunks] == ["title"]
    assert merge_change(base, {**theirs, "title": "Theirs"}, {"title": "Title"}).changes == {}


def test_fields_without_history_and_an_unknown_base_conflict_only_where_they_differ() -> None:
    theirs = {"title": "T", "content": "c\n", "pinned": True}
    assert merge_change(None, theirs, {"pinned": True}).hunks == []
    unknown = merge_change(None, theirs, {"content": "d\n", "pinned": False})
    assert [(h["field"], h["base"]) for h in unknown.hunks] == [("content", None), ("pinned", None)]
    assert merge_change(TextState("T", "c\n", []), theirs, {"pinned": False}).hunks[0]["field"] == "pinned"
