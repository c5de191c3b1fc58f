"""Markdown → safe HTML for public pages and the editor preview.

markdown-it-py renders with raw HTML off (``<script>`` arrives as text) and its own link
validation; the result still passes through nh3 with an allow-list of tags and attributes and only
``http``/``https``/``mailto`` URLs, so no script, event handler or ``javascript:`` URL survives.
"""

from __future__ import annotations

import re

import nh3
from markdown_it import MarkdownIt

ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "img",
        "li", "ol", "p", "pre", "s", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "code": {"class"},
}
URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto"})

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)


def render_markdown(text: str) -> str:
    """Sanitised HTML for ``text`` (Markdown)."""
    html = _markdown.render(text or "")
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


_TAGS = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")


def plain_excerpt(html: str, limit: int = 200) -> str:
    """A one-line text excerpt of sanitised HTML (Open Graph description)."""
    text = _SPACES.sub(" ", _TAGS.sub(" ", html)).strip()
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
