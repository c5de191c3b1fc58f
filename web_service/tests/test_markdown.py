import re

from web_service.app.markdown_render import plain_excerpt, render_markdown

XSS = "<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n[x](javascript:alert(1))\n"


def test_markdown_renders_headings_lists_links_and_tables() -> None:
    html = render_markdown("# Title\n\n- **bold** item\n\n[site](https://example.org)\n\n|a|b|\n|-|-|\n|1|2|\n")
    assert "<h1>Title</h1>" in html
    assert "<li><strong>bold</strong> item</li>" in html
    assert 'href="https://example.org"' in html
    assert "<td>1</td>" in html


def test_script_event_handlers_and_javascript_urls_never_survive() -> None:
    html = render_markdown(XSS)
    assert "<script" not in html
    assert "<img" not in html  # raw HTML arrives as inert text
    assert "&lt;script&gt;" in html
    assert 'href="javascript' not in html


def test_sanitiser_drops_dangerous_urls_even_in_markdown_links_and_images() -> None:
    html = render_markdown(
        "[a](JaVaScRiPt:alert(1)) [b](data:text/html;base64,PHNjcmlwdD4=) ![c](vbscript:x) [ok](mailto:me@example.org)"
    )
    assert 'href="javascript' not in html.lower()
    assert 'href="data:' not in html
    assert 'src="vbscript' not in html
    assert 'href="mailto:me@example.org"' in html


def test_links_get_rel_noopener() -> None:
    assert 'rel="noopener noreferrer nofollow"' in render_markdown("[x](https://example.org)")


def test_plain_excerpt_is_one_short_line() -> None:
    text = plain_excerpt(render_markdown("# Head\n\nSome *text* & more.\n\n" + "word " * 100), limit=50)
    assert "\n" not in text and len(text) <= 50 and text.startswith("Head Some text & more.")


def test_task_lists_become_disabled_checkboxes_and_nothing_else_does() -> None:
    html = render_markdown("- [ ] buy milk\n- [x] call mum\n- plain\n")
    assert html.count('type="checkbox"') == 2 and html.count("disabled") == 2
    assert html.count("checked") == 1 and "[ ]" not in html and "[x]" not in html
    hostile = render_markdown(
        "- [ ] <script>alert(1)</script>\n\n<input type=text onfocus=alert(1) autofocus>\n\n"
        "- [x] [a](javascript:alert(1))\n"
    )
    assert "<script" not in hostile and "href=" not in hostile  # shown as text, not run
    inputs = [sorted(re.findall(r"[a-z]+=\"[^\"]*\"", tag)) for tag in re.findall(r"<input[^>]*>", hostile)]
    assert inputs == [['disabled=""', 'type="checkbox"'], ['checked=""', 'disabled=""', 'type="checkbox"']]


def test_plain_excerpt_of_markdown_has_no_markup() -> None:
    text = plain_excerpt(render_markdown("# Heading\n\nSome **bold** & `code` it's\n"))
    assert text == "Heading Some bold & code it's"
