"""web_service end to end over HTTP (the launcher, real services, real Redis and SQLite):
sign-up/sign-in through the forms, the same-origin API with the session's token, transparent
refresh, sign-out revocation, CSRF, public pages and streaming through the WSGI forwarder."""

from __future__ import annotations

import hashlib
import html
import io
import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis

from tests.auth import bearer
from web_service.app.markdown_render import plain_excerpt, render_markdown
from web_service.tests.web_user import PASSWORD, WebUser

pytestmark = pytest.mark.e2e

SERVICES = ("user_service", "mobile_service", "llm_service", "image_service", "web_service")


@pytest.fixture(scope="module")
def suite(launch_suite: Callable[..., Any]) -> Any:
    return launch_suite(*SERVICES)


@pytest.fixture
def user(suite: Any) -> Iterator[WebUser]:
    web_user = WebUser(suite.url("web_service")).sign_up()
    yield web_user
    web_user.close()


@pytest.fixture(scope="module")
def redis_client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


def stored_session(redis_client: redis.Redis, cookie: str) -> dict[str, Any]:
    raw = redis_client.get("web:session:" + hashlib.sha256(cookie.encode()).hexdigest())
    assert raw, "no session in Redis for this cookie"
    return json.loads(raw)


def expire_access_token(redis_client: redis.Redis, cookie: str) -> dict[str, Any]:
    key = "web:session:" + hashlib.sha256(cookie.encode()).hexdigest()
    data = json.loads(redis_client.get(key) or "{}")
    data["access_expires_at"] = 0
    redis_client.set(key, json.dumps(data), keepttl=True)
    return data


def test_sign_up_signs_in_and_the_api_carries_the_session_token(user: WebUser) -> None:
    me = user.api("GET", "/api/v1/users/me")
    assert me.status_code == 200, me.text
    assert me.json()["username"] == user.username


def test_session_cookie_is_httponly_and_samesite_lax(suite: Any) -> None:
    response = httpx.get(suite.url("web_service") + "/login")
    set_cookie = response.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie


def test_cross_site_post_without_csrf_token_is_refused(user: WebUser) -> None:
    no_token = user.client.post("/api/v1/records", json={"title": "forged", "content": "x"})
    assert no_token.status_code == 403 and no_token.json()["code"] == "forbidden"
    cross_site = user.api(
        "POST", "/api/v1/records", json={"title": "forged"}, headers={"Origin": "https://evil.example"}
    )
    assert cross_site.status_code == 403
    form = user.client.post("/logout", headers={"Origin": "https://evil.example"})
    assert form.status_code == 403
    assert user.api("GET", "/api/v1/users/me").status_code == 200  # still signed in


def test_wrong_password_re_renders_the_form_with_an_error(suite: Any, user: WebUser) -> None:
    other = WebUser(suite.url("web_service"))
    other.username = user.username
    token = other.form_csrf("/login")
    response = other.client.post(
        "/login", data={"username": user.username, "password": "wrong-password", "csrf_token": token}
    )
    assert response.status_code == 401 and "Wrong username or password" in response.text
    other.close()


def test_expired_access_token_is_refreshed_transparently(user: WebUser, redis_client: redis.Redis, suite: Any) -> None:
    before = expire_access_token(redis_client, user.session_cookie)
    me = user.api("GET", "/api/v1/users/me")
    assert me.status_code == 200, me.text
    after = stored_session(redis_client, user.session_cookie)
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] != before["refresh_token"]
    # The old refresh token was rotated away at user_service.
    reuse = httpx.post(
        suite.url("user_service") + "/api/v1/auth/refresh", json={"refresh_token": before["refresh_token"]}
    )
    assert reuse.status_code == 401


def test_concurrent_requests_refresh_once_and_keep_the_session(user: WebUser, redis_client: redis.Redis) -> None:
    expire_access_token(redis_client, user.session_cookie)
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda _: user.api("GET", "/api/v1/users/me").status_code, range(6)))
    assert statuses == [200] * 6
    # Had two requests rotated the same refresh token, user_service would have revoked the family.
    assert user.api("GET", "/api/v1/users/me").status_code == 200


def test_sign_out_revokes_both_tokens_and_returns_to_sign_in(
    user: WebUser, redis_client: redis.Redis, suite: Any
) -> None:
    tokens = stored_session(redis_client, user.session_cookie)
    response = user.client.post("/logout", data={"csrf_token": user.csrf})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    users = suite.url("user_service")
    old_access = httpx.get(users + "/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert old_access.status_code == 401
    old_refresh = httpx.post(users + "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert old_refresh.status_code == 401
    assert user.client.get("/").headers["location"] == "/login"
    assert user.client.get("/api/v1/users/me").status_code == 401


def test_password_change_elsewhere_ends_the_browser_session(user: WebUser) -> None:
    changed = user.api(
        "POST", "/api/v1/users/me/password", json={"old_password": PASSWORD, "new_password": "another horse battery"}
    )
    assert changed.status_code == 204, changed.text
    after = user.api("GET", "/api/v1/users/me")
    assert after.status_code == 401 and after.json()["code"] in ("invalid_token", "not_authenticated")
    assert "sra_session=" in after.headers.get("set-cookie", "")  # the cookie is cleared
    assert user.client.get("/login").status_code == 200  # the sign-in form, not a redirect loop


def test_records_publish_and_public_page_through_web(user: WebUser, suite: Any) -> None:
    created = user.api(
        "POST",
        "/api/v1/records",
        json={"title": "Garden diary", "content": "# Tomatoes\n\n**ripe** today", "tags": ["Garden"]},
    )
    assert created.status_code == 201, created.text
    record = created.json()
    found = user.api("GET", "/api/v1/records", params={"q": "tomatoes"})
    assert found.status_code == 200 and record["id"] in [r["id"] for r in found.json()["data"]]
    summary = user.api("POST", f"/api/v1/records/{record['id']}/ai/summarize")  # web → mobile → llm
    assert summary.status_code == 200, summary.text
    summary_text = summary.json()["result"]
    assert summary_text
    published = user.api("POST", f"/api/v1/records/{record['id']}/publish")
    assert published.status_code == 200, published.text
    slug = published.json()["slug"]
    page = httpx.get(f"{suite.url('web_service')}/p/{slug}")
    assert page.status_code == 200
    assert "<h1>Tomatoes</h1>" in page.text and "<strong>ripe</strong>" in page.text
    assert '<meta property="og:title" content="Garden diary">' in page.text
    description = re.search(r'<meta property="og:description" content="([^"]*)">', page.text)
    # the summary as plain text: its Markdown rendered and the tags dropped (no "**" in a preview)
    expected = plain_excerpt(render_markdown(summary_text))
    assert description and html.unescape(description.group(1)) == expected and "**" not in expected
    assert user.api("DELETE", f"/api/v1/records/{record['id']}/publish").status_code in (200, 204)
    gone = httpx.get(f"{suite.url('web_service')}/p/{slug}")
    assert gone.status_code == 404 and "no longer published" in gone.text


def test_unknown_public_slug_is_a_404_page(suite: Any) -> None:
    response = httpx.get(f"{suite.url('web_service')}/p/does-not-exist")
    assert response.status_code == 404 and "text/html" in response.headers["content-type"]


def test_hostile_ids_get_the_error_shape(user: WebUser) -> None:
    for path in ("/api/v1/records/00000000-0000-0000-0000-000000000000", "/api/v1/records/%2e%2e%2fadmin"):
        response = user.api("GET", path)
        assert response.status_code in (404, 422), (path, response.text)
        assert set(response.json()) >= {"detail", "code", "request_id"}


def test_image_upload_streams_through_web_and_comes_back(user: WebUser) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(buffer, "PNG")
    upload = user.api("POST", "/api/v1/images", files={"file": ("red.png", buffer.getvalue(), "image/png")})
    assert upload.status_code == 201, upload.text
    image = upload.json()
    content = user.api("GET", f"/api/v1/images/{image['id']}/content")
    assert content.status_code == 200 and content.headers["content-type"] == "image/png"
    assert content.content == buffer.getvalue() or content.content.startswith(b"\x89PNG")


def test_chat_reply_streams_through_web_as_server_sent_events(user: WebUser) -> None:
    session = user.api("POST", "/api/v1/chat/sessions", json={"title": "web"})
    assert session.status_code == 201, session.text
    events: list[tuple[str, dict[str, Any]]] = []
    with user.client.stream(
        "POST",
        f"/api/v1/chat/sessions/{session.json()['id']}/messages",
        json={"content": "Hello there", "stream": True},
        headers={"X-CSRF-Token": user.csrf},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line[5:])))
    names = [n for n, _ in events]
    assert names.count("delta") >= 2 and names[-1] == "done"
    assert "".join(d["content"] for n, d in events if n == "delta").strip()
