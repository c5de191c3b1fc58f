"""The web app in a real headless Chromium (Debian's, driven by Playwright) against the launched
suite: a new user's whole walk, the XSS page, CSRF and the cookie's flags. Screenshots of each
step go to ``test-artifacts/browser/``."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from common.config import REPO_ROOT
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
PHONE = {"width": 390, "height": 844}
PASSWORD = "correct horse battery"
XSS_MARKDOWN = "# Hostile\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n[x](javascript:alert(1))\n"

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (install Debian's chromium package)", allow_module_level=True)


@pytest.fixture(scope="module")
def web_url(launch_suite: Callable[..., Any]) -> str:
    suite = launch_suite("user_service", "mobile_service", "llm_service", "image_service", "web_service")
    return suite.url("web_service")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_context(browser: Any, **options: Any) -> Any:
    """A fresh browser context (its own cookies), phone-sized; generous waits on a busy machine."""
    ctx = browser.new_context(**{"viewport": PHONE, "locale": "en-US", **options})
    ctx.set_default_timeout(30_000)
    return ctx


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = open_context(browser)
    yield ctx
    ctx.close()


def shot(page: Any, name: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")  # a sticky top bar would be drawn mid-page otherwise
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_up(page: Any, web_url: str) -> str:
    username = "pw_" + uuid.uuid4().hex[:10]
    page.goto(f"{web_url}/register")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    try:
        page.wait_for_url(re.compile(r"/(#/records)?$"), timeout=30_000)  # password hashing is slow
    except sync_api.TimeoutError:
        shot(page, f"sign-up-failed-{username}")
        pytest.fail(f"sign-up did not reach the app: {page.url} {page.locator('body').inner_text()[:500]!r}")
    page.locator("#view-records").wait_for(state="visible")
    return username


def create_record(page: Any, title: str, content: str, tags: str = "") -> str:
    page.click("#new-record")
    page.locator("#view-editor").wait_for(state="visible")
    page.fill("#title", title)
    page.fill("#content", content)
    page.fill("#tags", tags)
    page.click("#save")
    page.wait_for_url(re.compile(r"#/records/[0-9a-f-]{36}$"))
    page.locator("#save-state", has_text="Saved").wait_for()
    return page.url.rsplit("/", 1)[-1]


def publish(page: Any) -> str:
    page.click("#publish")
    link = page.locator("#public-link")
    link.wait_for(state="visible")
    href = link.get_attribute("href")
    assert href and "/p/" in href
    return href


def test_a_new_user_walks_through_the_app(browser: Any, context: Any, web_url: str) -> None:
    page = context.new_page()
    sign_up(page, web_url)
    shot(page, "01-signed-up")

    # The session cookie is HttpOnly and SameSite=Lax: page scripts cannot read it.
    cookie = next(c for c in context.cookies() if c["name"] == "sra_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert "sra_session" not in page.evaluate("document.cookie")

    word = "zucchini" + uuid.uuid4().hex[:6]
    title = f"Browser diary {word}"
    page.click("#new-record")
    page.fill("#title", title)
    page.fill("#content", f"# Harvest\n\n- **{word}** picked\n- beans\n")
    page.fill("#tags", "garden, browser")
    page.click("#tab-preview")
    page.locator("#preview h1", has_text="Harvest").wait_for()
    assert page.locator("#preview strong").inner_text() == word
    assert page.locator(".view:visible").count() == 1  # only the editor shows
    shot(page, "02-editor-preview")
    page.click("#save")
    page.locator("#save-state", has_text="Saved").wait_for()

    page.click("#tabs a[data-view=records]")
    page.fill("#search", word)
    item = page.locator("#record-list .record-item", has_text=title)
    item.wait_for()
    assert page.locator("#record-list .record-item").count() == 1
    shot(page, "03-search")

    item.click()
    page.locator("#title").wait_for(state="visible")
    public_url = publish(page)
    shot(page, "04-published")

    stranger = open_context(browser)  # a fresh context: no cookies
    try:
        public = stranger.new_page()
        public.goto(public_url)
        assert public.locator("h1.record-title").inner_text() == title
        assert public.locator("#record-body h1").inner_text() == "Harvest"
        assert public.locator("#record-body li strong").inner_text() == word
        assert public.locator('meta[property="og:title"]').get_attribute("content") == title
        shot(public, "05-public-page")
    finally:
        stranger.close()

    page.click("#tabs a[data-view=chat]")
    page.locator("#view-chat").wait_for(state="visible")
    # Count how many times the reply's text grows while it streams in.
    page.evaluate(
        """() => {
            window.__replyUpdates = 0;
            new MutationObserver((records) => {
                for (const r of records) {
                    const node = r.target.nodeType === 1 ? r.target : r.target.parentElement;
                    if (node && node.closest('.message.assistant')) window.__replyUpdates++;
                }
            }).observe(document.getElementById('chat-log'), {subtree: true, childList: true, characterData: true});
        }"""
    )
    page.fill("#chat-input", "Hello from the browser")
    page.click("#chat-send")
    reply = page.locator(".message.assistant").last
    try:
        page.locator(".message.assistant[data-state=done]").wait_for()
    except sync_api.TimeoutError:
        shot(page, "06-chat-failed")
        pytest.fail(f"the reply did not finish: {reply.get_attribute('data-state')!r} {reply.inner_text()!r}")
    assert reply.inner_text().strip()
    assert page.evaluate("window.__replyUpdates") >= 2, "the reply arrived in one piece, not streamed"
    page.locator("#chat-sessions li").first.wait_for()
    shot(page, "06-chat")

    page.click("#sign-out")
    page.wait_for_url(re.compile(r"/login$"))
    page.locator("input[name=csrf_token]").wait_for(state="attached")
    shot(page, "07-signed-out")
    page.goto(f"{web_url}/")
    assert page.url.endswith("/login")


def test_hostile_markdown_is_inert_on_the_public_page(browser: Any, context: Any, web_url: str) -> None:
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_up(page, web_url)
    create_record(page, "Hostile record", XSS_MARKDOWN)
    page.click("#tab-preview")
    page.locator("#preview h1", has_text="Hostile").wait_for()
    public_url = publish(page)

    stranger = open_context(browser)
    try:
        public = stranger.new_page()
        public.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        public.goto(public_url)
        public.wait_for_load_state("load")
        body = public.locator("#record-body")
        assert "<script>alert(1)</script>" in body.inner_text()  # shown as text, not run
        assert body.locator("script").count() == 0
        assert body.locator("img").count() == 0
        assert public.locator("[onerror]").count() == 0
        assert public.locator('a[href^="javascript"]').count() == 0
        public.locator("#record-body a").all()  # whatever links remain
        for link in public.locator("a").all():
            href = (link.get_attribute("href") or "").lower()
            assert not href.startswith("javascript"), href
        shot(public, "08-xss-public-page")
    finally:
        stranger.close()
    assert dialogs == []


def test_cross_site_form_post_is_refused(browser: Any, context: Any, web_url: str) -> None:
    page = context.new_page()
    sign_up(page, web_url)
    attacker = context.new_page()
    attacker.set_content(f'<form id="f" method="post" action="{web_url}/logout"><input name="x" value="1"></form>')
    with attacker.expect_navigation() as navigation:
        attacker.evaluate("document.getElementById('f').submit()")
    assert navigation.value.status == 403
    shot(attacker, "09-cross-site-post-refused")
    page.reload()
    page.locator("#view-records").wait_for(state="visible")  # still signed in


def png_bytes(colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, "PNG")
    return buffer.getvalue()


def image_loaded(locator: Any) -> bool:
    return bool(locator.evaluate("img => img.complete && img.naturalWidth > 0"))


def test_images_gallery_generation_progress_and_public_images(browser: Any, context: Any, web_url: str) -> None:
    page = context.new_page()
    sign_up(page, web_url)

    page.click("#tabs a[data-view=images]")
    page.set_input_files(
        "#image-file", {"name": "red.png", "mimeType": "image/png", "buffer": png_bytes((220, 30, 30))}
    )
    page.click("#upload-form button[type=submit]")
    thumb = page.locator("#gallery figure img").first
    thumb.wait_for()
    page.wait_for_function("() => [...document.querySelectorAll('#gallery img')].every(i => i.complete)")
    assert image_loaded(thumb)
    shot(page, "10-gallery")

    page.click("#tabs a[data-view=gen]")
    page.fill("#gen-prompt", "a red bicycle by the sea")
    page.select_option("#gen-n", "2")
    page.click("#gen-form button[type=submit]")
    done = page.locator("#gen-tasks li[data-status=succeeded]")
    done.wait_for(timeout=30_000)
    assert done.locator("progress").get_attribute("value") == "1"
    assert done.locator("img").count() == 2
    shot(page, "11-generation-done")

    page.click("#tabs a[data-view=records]")
    create_record(page, "Photo note", "A photo:")
    page.set_input_files(
        "#attach-file", {"name": "blue.png", "mimeType": "image/png", "buffer": png_bytes((30, 30, 220))}
    )
    page.locator("#attachments img").wait_for()
    public_url = publish(page)

    stranger = open_context(browser)
    try:
        public = stranger.new_page()
        public.goto(public_url)
        public.wait_for_load_state("load")
        image = public.locator("article.public-record img").first
        assert image_loaded(image), "a published record's image is shown to anyone"
        assert public.locator('meta[property="og:image"]').get_attribute("content")
        shot(public, "12-public-page-with-image")
    finally:
        stranger.close()


def test_the_ui_speaks_simplified_chinese(browser: Any, web_url: str) -> None:
    ctx = open_context(browser, locale="zh-CN", extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    try:
        page = ctx.new_page()
        page.goto(f"{web_url}/login")
        assert page.locator("h1").inner_text() == "登录"
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        page.click("a.lang-toggle")  # the toggle switches to English and remembers it
        page.locator("h1", has_text="Sign in").wait_for()
    finally:
        ctx.close()


# "Ask my records" (docs/api.md §15): the canned upstream embeds texts sharing words near each
# other and answers from the numbered sources as "From your records: <sentence> [n]".
TRIP = ("Lisbon weekend", "We ate grilled sardines by the river at dusk. The tram climbed the old hill.")
PACKING = ("Packing for Lisbon", "Tram card, sunscreen and a camera for the old hill.")
BREAD = ("Sourdough starter", "Feed it flour and water every morning; bake on Sundays.")
DESKTOP = {"width": 1280, "height": 900}


def shots(page: Any, name: str) -> None:
    """The page on a desktop window and on the phone (the context's size), full length."""
    page.set_viewport_size(DESKTOP)
    shot(page, f"{name}-desktop")
    page.set_viewport_size(PHONE)
    shot(page, f"{name}-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the page overflows the phone"


def index_status(page: Any, web_url: str) -> dict[str, Any]:
    response = page.request.get(f"{web_url}/api/v1/index/status")
    assert response.ok, response.text()
    return response.json()


def watch_updates(page: Any, selector: str) -> None:
    """Count in ``window.__updates`` the changes of the element's contents (one per piece shown)."""
    page.evaluate(
        """(selector) => {
            window.__updates = 0;
            new MutationObserver((records) => (window.__updates += records.length))
                .observe(document.querySelector(selector), {subtree: true, childList: true, characterData: true});
        }""",
        selector,
    )


def test_ask_my_records_semantic_search_and_related_records(browser: Any, context: Any, web_url: str) -> None:
    page = context.new_page()
    sign_up(page, web_url)
    trip = create_record(page, *TRIP, tags="travel")
    page.click("#tabs a[data-view=records]")
    packing = create_record(page, *PACKING, tags="travel")
    page.click("#tabs a[data-view=records]")
    create_record(page, *BREAD)
    assert wait_until(lambda: index_status(page, web_url)["pending"] == 0, 60), index_status(page, web_url)

    # Ask: the index line, the answer streamed in, [n] citing the trip, the source linking to it.
    page.click("#tabs a[data-view=ask]")
    page.locator("#index-status", has_text="3 of 3 records indexed").wait_for()
    watch_updates(page, "#ask-answer")
    page.fill("#ask-input", "Where did we eat sardines?")
    page.press("#ask-input", "Enter")
    answer = page.locator("#ask-answer")
    try:
        page.locator("#ask-answer[data-state=done]").wait_for()
    except sync_api.TimeoutError:
        shot(page, "13-ask-failed")
        pytest.fail(f"no answer: {answer.get_attribute('data-state')!r} {page.locator('#view-ask').inner_text()!r}")
    assert "grilled sardines by the river" in answer.inner_text()
    assert page.evaluate("window.__updates") >= 2, "the answer arrived in one piece, not streamed"
    assert page.locator("#ask-state").is_hidden()
    marker = answer.locator("a.cite").first
    assert marker.get_attribute("href") == f"#/records/{trip}"
    source = page.locator(f"#ask-sources li[data-record-id='{trip}']")
    assert source.locator("a").inner_text() == TRIP[0]
    assert source.locator("a").get_attribute("href") == f"#/records/{trip}"
    marker.click()  # scrolls to (and marks) the source instead of leaving the answer
    page.locator(f"#ask-sources li.highlight[data-record-id='{trip}']").wait_for()
    assert page.url.endswith("#/ask")
    shots(page, "13-ask")
    source.locator("a").click()
    page.wait_for_url(re.compile(f"#/records/{trip}$"))
    sync_api.expect(page.locator("#title")).to_have_value(TRIP[0])

    # A provider failure mid-answer shows its error text.
    page.click("#tabs a[data-view=ask]")
    page.fill("#ask-input", "Where did we eat sardines? [[cut]]")
    page.click("#ask-send")
    page.locator("#ask-answer[data-state=error]").wait_for()
    assert page.locator("#ask-state.error").inner_text().strip()

    # Search by meaning: "sardines" is in the trip's text, not its title; the card shows where.
    page.click("#tabs a[data-view=records]")
    page.select_option("#search-mode", "semantic")
    page.fill("#search", "sardines")
    first = page.locator("#record-list .record-item").first
    first.locator(".record-title", has_text=TRIP[0]).wait_for()
    assert "sardines" in first.locator(".match-snippet").inner_text()
    assert page.locator("#record-list .record-item .excerpt").count() == 0
    shots(page, "14-semantic-search")

    # The editor lists the records nearest to the open one, linking to them.
    first.click()
    related = page.locator(f"#related-list li[data-id='{packing}'] a")
    related.wait_for()
    assert related.inner_text() == PACKING[0]
    assert page.locator(f"#related-list li[data-id='{trip}']").count() == 0
    assert page.locator("#related-list li").count() <= 5
    shots(page, "15-related")
    related.click()
    page.wait_for_url(re.compile(f"#/records/{packing}$"))
    sync_api.expect(page.locator("#title")).to_have_value(PACKING[0])
    page.locator(f"#related-list li[data-id='{trip}']").wait_for()

    page.click("#tabs a[data-view=records]")
    page.click("#new-record")  # a record not saved yet has no related list
    assert page.locator("#related-box").is_hidden()


def test_the_ask_view_speaks_simplified_chinese(browser: Any, web_url: str) -> None:
    ctx = open_context(browser, locale="zh-CN", extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    try:
        page = ctx.new_page()
        sign_up(page, web_url)
        page.click("#tabs a[data-view=ask]")
        assert page.locator("#tabs a[data-view=ask]").inner_text() == "问答"
        assert page.locator("#ask-send").inner_text() == "提问"
        page.locator("#index-status", has_text="还没有可以提问的记录。").wait_for()
        shot(page, "16-ask-zh-phone")
        page.click("#tabs a[data-view=records]")
        page.fill("#search", "nothing-like-this")
        sync_api.expect(page.locator("#records-empty")).to_have_text("没有匹配的记录。")
    finally:
        ctx.close()


# Record history (docs/api.md §16): revisions, their diff, restore, the trash and stale saves.


def api_call(page: Any, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A same-origin API call made by the page (its session cookie and CSRF token), as another
    device would change the record meanwhile."""
    return page.evaluate(
        """async ([method, path, body]) => {
            const csrf = JSON.parse(document.getElementById('boot').textContent).csrf;
            const headers = {'X-CSRF-Token': csrf, 'Content-Type': 'application/json'};
            const response = await fetch(path, {method, headers, body: body === null ? undefined : JSON.stringify(body)});
            return {status: response.status, body: await response.json().catch(() => null)};
        }""",
        [method, path, body],
    )


def save_as_version(page: Any, version: int) -> None:
    page.click("#save")
    page.locator(f"#view-editor[data-version='{version}']").wait_for()


LONG_LINE = "see https://example.org/" + "very-long-path-" * 12


def test_history_shows_the_diff_and_restores_an_older_version(context: Any, web_url: str) -> None:
    page = context.new_page()
    sign_up(page, web_url)
    create_record(page, "Bread recipe", "flour\nwater\nsalt\n")
    page.locator("#view-editor[data-version='1']").wait_for()
    page.fill("#content", "flour\nmilk\nsalt\n")
    save_as_version(page, 2)
    page.fill("#content", f"flour\nmilk\nsalt\nsugar\n{LONG_LINE}\n")
    save_as_version(page, 3)

    page.click("#history-toggle")
    revisions = page.locator("#history-list li")
    sync_api.expect(revisions).to_have_count(2)
    assert [li.get_attribute("data-revision") for li in revisions.all()] == ["2", "1"]  # newest first
    shots(page, "17-history")

    page.click("#history-list li[data-revision='1'] button")
    page.locator("#history-diff[data-revision='1']").wait_for()
    assert page.locator("#diff-lines .diff-line.delete .diff-text").all_inner_texts() == ["water"]
    assert page.locator("#diff-lines .diff-line.add .diff-text").all_inner_texts() == ["milk", "sugar", LONG_LINE]
    assert "flour" in page.locator("#diff-lines .diff-line.context").all_inner_texts()[0]
    shots(page, "18-history-diff")

    page.click("#history-restore")
    page.locator("#view-editor[data-version='4']").wait_for()
    sync_api.expect(page.locator("#content")).to_have_value("flour\nwater\nsalt\n")
    sync_api.expect(revisions).to_have_count(3)  # the state it replaced is kept too
    page.reload()
    sync_api.expect(page.locator("#content")).to_have_value("flour\nwater\nsalt\n")


def test_a_deleted_record_comes_back_from_the_trash(context: Any, web_url: str) -> None:
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    sign_up(page, web_url)
    record_id = create_record(page, "Old to-do list", "- call the plumber\n", tags="home")
    page.click("#delete")
    page.locator("#view-records").wait_for()
    page.click("#open-trash")
    item = page.locator(f"#trash-list li[data-id='{record_id}']")
    item.wait_for()
    assert "Old to-do list" in item.inner_text() and "#home" in item.inner_text()
    shots(page, "19-trash")

    item.locator("button.undelete").click()
    page.wait_for_url(re.compile(f"#/records/{record_id}$"))
    sync_api.expect(page.locator("#title")).to_have_value("Old to-do list")
    sync_api.expect(page.locator("#content")).to_have_value("- call the plumber\n")
    page.click("#tabs a[data-view=records]")
    page.locator(f"#record-list li[data-id='{record_id}']").wait_for()
    page.click("#open-trash")
    page.locator("#trash-empty").wait_for()


def test_a_stale_save_is_merged_or_shows_both_sides(context: Any, web_url: str) -> None:
    page = context.new_page()
    sign_up(page, web_url)
    record_id = create_record(page, "Shopping", "eggs\nbread\nmilk\napples\ncheese\n")
    path = f"/api/v1/records/{record_id}"

    # Another device changes the first line while the editor, still at version 1, changes the last.
    other = api_call(page, "PATCH", path, {"content": "duck eggs\nbread\nmilk\napples\ncheese\n", "version": 1})
    assert other["status"] == 200 and other["body"]["version"] == 2, other
    page.fill("#content", "eggs\nbread\nmilk\napples\nblue cheese\n")
    save_as_version(page, 3)
    page.locator("#save-state", has_text="merged").wait_for()
    sync_api.expect(page.locator("#content")).to_have_value("duck eggs\nbread\nmilk\napples\nblue cheese\n")
    assert page.locator("#conflict-box").is_hidden()
    shot(page, "20-merged-phone")

    # Now both change the same line: the save is refused and both sides are shown.
    theirs = "duck eggs\nbread\noat milk\napples\nblue cheese\n"
    other = api_call(page, "PATCH", path, {"content": theirs, "version": 3})
    assert other["status"] == 200 and other["body"]["version"] == 4, other
    page.fill("#content", "duck eggs\nbread\nsoy milk\napples\nblue cheese\n")
    page.click("#save")
    box = page.locator("#conflict-box")
    box.wait_for()
    hunk = box.locator(".conflict-hunk[data-field=content]")
    assert hunk.locator("[data-side=theirs] pre").inner_text() == "oat milk"
    assert hunk.locator("[data-side=yours] pre").inner_text() == "soy milk"
    assert "version 4" in hunk.locator("[data-side=theirs]").inner_text()
    assert "line 3" in hunk.inner_text()
    sync_api.expect(page.locator("#content")).to_have_value("duck eggs\nbread\nsoy milk\napples\nblue cheese\n")
    assert page.locator("#flash").is_hidden()
    shots(page, "21-conflict")

    page.click("#conflict-mine")  # saved over version 4; theirs stays in the history
    page.locator("#view-editor[data-version='5']").wait_for()
    assert box.is_hidden()
    assert api_call(page, "GET", path)["body"]["content"] == "duck eggs\nbread\nsoy milk\napples\nblue cheese\n"
    page.click("#history-toggle")
    page.locator("#history-list li[data-kind=stale_edit]").first.wait_for()


# A record no phone can show in one line: a 200-character title and a 2,000-character line, no spaces.
LONG_TITLE = ("Unbroken-title-" * 14)[:200]
LONG_BODY = ("one-long-line-of-text-" * 91)[:2000]


def fits_the_window(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= innerWidth"))


def test_a_long_record_fits_the_phone_and_the_desktop(context: Any, web_url: str) -> None:
    page = context.new_page()
    sign_up(page, web_url)
    assert len(LONG_TITLE) == 200 and len(LONG_BODY) == 2000 and "\n" not in LONG_BODY
    record_id = create_record(page, LONG_TITLE, LONG_BODY)
    public_url = publish(page)
    for name, size in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(size)
        page.click("#tabs a[data-view=records]")
        page.locator(f"#record-list li[data-id='{record_id}']").wait_for()
        shot(page, f"22-long-record-list-{name}")
        assert fits_the_window(page), f"the records list overflows the {name}"
        page.click(f"#record-list li[data-id='{record_id}'] a")
        page.locator("#public-link").wait_for(state="visible")
        shot(page, f"23-long-record-editor-{name}")
        assert fits_the_window(page), f"the editor overflows the {name}"
        page.click("#tab-preview")
        page.locator("#preview p").wait_for()
        assert fits_the_window(page), f"the preview overflows the {name}"
        public = context.new_page()
        public.set_viewport_size(size)
        public.goto(public_url)
        public.locator("h1.record-title").wait_for()
        shot(public, f"24-long-record-public-{name}")
        assert fits_the_window(public), f"the public page overflows the {name}"
        public.close()


MARKDOWN_NOTE = "# Heading\n\nSome **bold** words\n\n- [ ] buy milk\n- [x] call mum\n"
MARKDOWN_NOTE_TEXT = "Heading Some bold words buy milk call mum"


def test_excerpts_task_lists_no_match_and_favicon(context: Any, web_url: str) -> None:
    page = context.new_page()
    missing: list[str] = []
    context.on("response", lambda response: missing.append(response.url) if response.status == 404 else None)
    sign_up(page, web_url)
    record_id = create_record(page, "Markdown note", MARKDOWN_NOTE)
    page.click("#tab-preview")
    boxes = page.locator("#preview li input[type=checkbox]")
    sync_api.expect(boxes).to_have_count(2)
    assert [box.is_disabled() for box in boxes.all()] == [True, True]
    assert [box.is_checked() for box in boxes.all()] == [False, True]
    public_url = publish(page)

    page.click("#tabs a[data-view=records]")
    excerpt = page.locator(f"#record-list li[data-id='{record_id}'] .excerpt")
    sync_api.expect(excerpt).to_have_text(MARKDOWN_NOTE_TEXT)  # no "#", "**" or "[ ]"
    page.fill("#search", "nothing-like-this-" + uuid.uuid4().hex[:6])
    sync_api.expect(page.locator("#records-empty")).to_have_text("No records match.")
    sync_api.expect(page.locator("#record-list li")).to_have_count(0)
    shot(page, "25-no-match")
    page.fill("#search", "")
    excerpt.wait_for()
    assert page.locator("#records-empty").is_hidden()

    public = context.new_page()
    public.goto(public_url)
    public.locator("h1.record-title").wait_for()
    assert public.locator('meta[name="description"]').get_attribute("content") == MARKDOWN_NOTE_TEXT
    assert public.locator("#record-body input[type=checkbox][disabled]").count() == 2
    assert public.locator("#record-body input:not([type=checkbox])").count() == 0
    shot(public, "26-task-list-public")
    for each in (page, public):
        icon = each.locator("link[rel=icon]").get_attribute("href")
        assert icon
        answer = each.request.get(web_url + icon)
        assert answer.ok and answer.headers["content-type"].startswith("image/svg+xml")
    assert missing == []


def test_the_editor_marks_unsaved_changes_and_asks_before_leaving(context: Any, web_url: str) -> None:
    page = context.new_page()
    sign_up(page, web_url)
    record_id = create_record(page, "Garden plan", "Tomatoes and basil by the sunny wall, beans along the fence.")
    editor = page.locator("#view-editor")
    state = page.locator("#save-state")
    sync_api.expect(editor).to_have_attribute("data-dirty", "false")
    page.fill("#content", "Tomatoes, basil and beans by the sunny wall.")
    sync_api.expect(editor).to_have_attribute("data-dirty", "true")
    sync_api.expect(state).to_have_text("● Edited")
    page.fill("#content", "Tomatoes and basil by the sunny wall, beans along the fence.")  # back as saved
    sync_api.expect(editor).to_have_attribute("data-dirty", "false")
    sync_api.expect(state).to_have_text("Saved")

    # Suggested tags fill the field without saving: the editor says so instead of "Saved".
    page.click("#ai-tags")
    sync_api.expect(page.locator("#tags")).not_to_have_value("")
    sync_api.expect(editor).to_have_attribute("data-dirty", "true")
    sync_api.expect(state).to_have_text("● Edited")
    shots(page, "27-unsaved-changes")

    # Leaving asks first: "stay" keeps the editor and its text, the tab's close asks too, "leave" leaves.
    answers = ["dismiss", "dismiss", "accept"]
    dialogs: list[tuple[str, str]] = []

    def answer(dialog: Any) -> None:
        dialogs.append((dialog.type, dialog.message))
        getattr(dialog, answers[len(dialogs) - 1])()

    page.on("dialog", answer)
    tags = page.locator("#tags").input_value()
    with page.expect_event("dialog"):
        page.click("#tabs a[data-view=records]")
    assert dialogs[0] == ("confirm", "You have unsaved changes. Leave without saving?")
    assert page.url.endswith(f"#/records/{record_id}")
    assert editor.is_visible() and page.locator("#tags").input_value() == tags
    with page.expect_event("dialog"):
        page.close(run_before_unload=True)
    assert dialogs[1][0] == "beforeunload" and not page.is_closed()
    with page.expect_event("dialog"):
        page.click("#tabs a[data-view=records]")
    page.locator("#view-records").wait_for(state="visible")
    assert len(dialogs) == 3

    # Saved changes leave without a question.
    page.click(f"#record-list li[data-id='{record_id}'] a")
    page.fill("#title", "Garden plan, spring")
    page.click("#save")
    sync_api.expect(state).to_have_text("Saved")
    page.click("#tabs a[data-view=records]")
    page.locator("#view-records").wait_for(state="visible")
    assert len(dialogs) == 3


def test_chat_retries_a_failed_reply_comes_back_and_writes_newlines(context: Any, web_url: str) -> None:
    page = context.new_page()
    sign_up(page, web_url)
    page.click("#tabs a[data-view=chat]")
    page.locator("#view-chat").wait_for(state="visible")

    # Shift+Enter writes a newline; Enter alone sends.
    page.click("#chat-input")
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    sync_api.expect(page.locator("#chat-input")).to_have_value("first line\nsecond line")
    assert page.locator(".message").count() == 0

    # The provider cuts the reply: it says so and offers to ask again (POST .../retry).
    page.fill("#chat-input", "Tell me a story [[cut]]")
    page.keyboard.press("Enter")
    retry = page.locator(".message.assistant[data-state=error] button.retry")
    retry.wait_for()
    page.wait_for_url(re.compile(r"#/chat/[0-9a-f-]{36}$"))
    chat_url = page.url
    shots(page, "28-chat-retry")
    with page.expect_request(re.compile(r"/api/v1/chat/sessions/[0-9a-f-]{36}/retry$")) as asked:
        retry.click()
    assert asked.value.method == "POST"
    page.locator(".message.assistant[data-state=error] button.retry").wait_for()  # cut again: offered again
    assert page.locator(".message.assistant").count() == 1

    # Coming back to Chat opens the last conversation, with its failed reply still retryable.
    page.click("#tabs a[data-view=records]")
    page.locator("#view-records").wait_for(state="visible")
    page.click("#tabs a[data-view=chat]")
    page.wait_for_url(chat_url)
    sync_api.expect(page.locator(".message.user")).to_have_text("Tell me a story [[cut]]")
    page.locator(".message.assistant button.retry").wait_for()
    page.reload()
    page.goto(f"{web_url}/#/chat")
    page.wait_for_url(chat_url)
    page.click("#new-chat")
    page.wait_for_url(re.compile(r"#/chat$"))
    sync_api.expect(page.locator(".message")).to_have_count(0)


def test_errors_are_told_in_the_ui_language_and_the_form_knows_the_username_rule(browser: Any, web_url: str) -> None:
    ctx = open_context(browser, locale="zh-CN", extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    try:
        page = ctx.new_page()
        page.goto(f"{web_url}/register")
        username = page.locator("input[name=username]")
        assert username.get_attribute("pattern") == "[A-Za-z0-9_.\\-]{3,32}"
        username.fill("no spaces!")
        assert username.evaluate("input => input.validity.patternMismatch")
        username.fill("fine_name.1")
        assert not username.evaluate("input => input.validity.patternMismatch")

        sign_up(page, web_url)
        page.click("#new-record")
        page.locator("#view-editor").wait_for(state="visible")
        page.click("#save")  # neither title nor content: 422 validation_error
        flash = page.locator("#flash")
        sync_api.expect(flash).to_have_text("输入的内容有误，请检查后再试。")
        assert not re.search(r"[A-Za-z]", flash.inner_text()), "English server text reached the zh-CN UI"
        shot(page, "29-zh-validation-error")
    finally:
        ctx.close()
