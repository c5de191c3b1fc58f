"""UI strings in English and Simplified Chinese (``res/i18n/<lang>.json``).

The language is the ``lang`` cookie when set (the toggle in the page header), else the best match
of ``Accept-Language``. Server-rendered pages use ``t(key)``; the page scripts get the same
catalogue inlined as JSON.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from flask import request

I18N_DIR = Path(__file__).resolve().parent.parent / "res" / "i18n"
LANGUAGES: tuple[str, ...] = ("en", "zh-CN")
LANG_COOKIE = "lang"


@lru_cache
def catalogue(lang: str) -> dict[str, str]:
    """The message catalogue of ``lang``, English filling any key it lacks."""
    english = json.loads((I18N_DIR / "en.json").read_text(encoding="utf-8"))
    if lang == "en":
        return english
    return {**english, **json.loads((I18N_DIR / f"{lang}.json").read_text(encoding="utf-8"))}


def normalise_language(value: str | None) -> str | None:
    if not value:
        return None
    lowered = value.strip().lower()
    if lowered.startswith("zh"):
        return "zh-CN"
    if lowered.startswith("en"):
        return "en"
    return None


def current_language(default: str = "en") -> str:
    chosen = normalise_language(request.cookies.get(LANG_COOKIE))
    if chosen:
        return chosen
    for value, _quality in request.accept_languages:
        lang = normalise_language(value)
        if lang:
            return lang
    return default if default in LANGUAGES else "en"


def translate(lang: str, key: str, **values: object) -> str:
    text = catalogue(lang).get(key, key)
    return text.format(**values) if values else text
