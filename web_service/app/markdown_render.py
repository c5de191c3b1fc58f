"""Markdown → safe HTML for public pages and the editor preview.

markdown-it-py renders with raw HTML off (``<script>`` arrives as text) and its own link
validation; the result still passes through nh3 with an allow-list of tags and attributes and only
``http``/``https``/``mailto`` URLs, so no script, event handler or ``javascript:`` URL survives.
"""

from __future__ import annotations

import re
from html import unescape

import nh3
from markdown_it import MarkdownIt

ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "img",
        "input", "li", "ol", "p", "pre", "s", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "code": {"class"},
    "input": {"checked"},
    "li": {"class"},
}
# Every <input> that survives is a disabled checkbox, whatever it claimed to be.
FORCED_ATTRIBUTES: dict[str, dict[str, str]] = {"input": {"type": "checkbox", "disabled": ""}}
URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto"})

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)


# A list item starting "[ ] " or "[x] " (GitHub task lists). Raw HTML is off, so "<li>" in the
# output can only come from a Markdown list item, never from the user's text.
_TASK_ITEM = re.compile(r"<li>(\n?<p>)?\[([ xX])\] ")


def _task_checkbox(match: re.Match[str]) -> str:
    checked = " checked" if match.group(2) in "xX" else ""
    return f'<li class="task-list-item">{match.group(1) or ""}<input type="checkbox" disabled{checked}> '


def render_markdown(text: str) -> str:
    """Sanitised HTML for ``text`` (Markdown)."""
    rendered = _TASK_ITEM.sub(_task_checkbox, _markdown.render(text or ""))
    return nh3.clean(
        rendered,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        set_tag_attribute_values={tag: dict(values) for tag, values in FORCED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


_TAGS = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")


def plain_excerpt(html: str, limit: int = 200) -> str:
    """A one-line text excerpt of sanitised HTML (Open Graph description)."""
    text = _SPACES.sub(" ", _TAGS.sub(" ", html)).strip()
    text = unescape(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
