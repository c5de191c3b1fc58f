import json
import re

from web_service.app.i18n import I18N_DIR, catalogue, normalise_language

STATIC = I18N_DIR.parent / "static"
TEMPLATES = I18N_DIR.parent / "templates"


def test_both_catalogues_have_the_same_keys() -> None:
    english = json.loads((I18N_DIR / "en.json").read_text(encoding="utf-8"))
    chinese = json.loads((I18N_DIR / "zh-CN.json").read_text(encoding="utf-8"))
    assert set(english) == set(chinese)


def test_every_key_the_pages_and_scripts_use_exists() -> None:
    used = set(re.findall(r"""\bt\(\s*["']([a-z_.]+)["']""", (STATIC / "app.js").read_text()))
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""\bt\(\s*'([a-z_.]+)'""", template.read_text()))
    used |= {f"status.{s}" for s in ("pending", "running", "succeeded", "partial", "failed", "cancelled")}
    missing = used - set(catalogue("en"))
    assert not missing


def test_language_names_are_normalised() -> None:
    assert normalise_language("zh-Hans-CN") == "zh-CN"
    assert normalise_language("en-GB") == "en"
    assert normalise_language("fr") is None


def test_both_catalogues_fill_the_same_placeholders() -> None:
    english = json.loads((I18N_DIR / "en.json").read_text(encoding="utf-8"))
    chinese = json.loads((I18N_DIR / "zh-CN.json").read_text(encoding="utf-8"))
    placeholders = re.compile(r"\{(\w+)\}")
    for key, text in english.items():
        assert set(placeholders.findall(text)) == set(placeholders.findall(chinese[key])), key
