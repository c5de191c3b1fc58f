"""Browser-session rules that need no other service: cookie flags, CSRF, the token-handing
API paths, language choice, and the error shape of docs/api.md §4 when upstreams are down."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from web_service.app.sessions import BrowserSession, refresh_lock_key, session_key
from web_service.app.setup import close_web_resources
from web_service.app.user_api import TokenPair
from web_service.tests.conftest import csrf_from


def test_login_form_sets_an_httponly_samesite_session_cookie(client: FlaskClient) -> None:
    response = client.get("/login")
    assert response.status_code == 200
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("sra_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert csrf_from(response.get_data(as_text=True))
    assert "Content-Security-Policy" in response.headers


def test_register_form_carries_a_csrf_field(client: FlaskClient) -> None:
    assert csrf_from(client.get("/register").get_data(as_text=True))


def test_production_cookie_is_secure(web_app_factory: Callable[..., Flask]) -> None:
    app = web_app_factory(env="production")
    cookie = app.test_client().get("/login").headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_post_without_csrf_token_is_refused(client: FlaskClient) -> None:
    client.get("/login")
    response = client.post("/login", data={"username": "alice", "password": "secret-password"})
    assert response.status_code == 403
    assert "CSRF" in response.get_data(as_text=True)


def test_an_expired_sign_in_form_comes_back_with_a_fresh_token(client: FlaskClient) -> None:
    response = client.post("/login", data={"username": "alice", "password": "pw-pw-pw-pw", "csrf_token": "stale"})
    assert response.status_code == 403
    html = response.get_data(as_text=True)
    assert "expired" in html and 'value="alice"' in html
    fresh = csrf_from(html)
    assert fresh != "stale" and "sra_session=" in response.headers["Set-Cookie"]


def test_logout_and_register_without_token_are_refused(client: FlaskClient) -> None:
    client.get("/register")
    assert client.post("/register", data={"username": "bob", "password": "long-enough-pw"}).status_code == 403
    assert client.post("/logout").status_code == 403


def test_post_with_a_wrong_csrf_token_is_refused_with_the_error_shape(client: FlaskClient) -> None:
    client.get("/login")
    response = client.post("/api/v1/records", json={"title": "x"}, headers={"X-CSRF-Token": "forged"})
    assert response.status_code == 403
    body = response.get_json()
    assert body["code"] == "forbidden" and body["request_id"]


def test_cross_site_origin_is_refused_even_with_the_token(client: FlaskClient) -> None:
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login",
        data={"username": "alice", "password": "secret-password", "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403


def test_login_with_token_and_user_service_down_answers_503(client: FlaskClient) -> None:
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login",
        data={"username": "alice", "password": "secret-password", "csrf_token": token},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 503
    assert response.get_json()["code"] == "service_unavailable"


def test_api_without_session_is_forwarded_anonymously_and_down_upstream_is_503(client: FlaskClient) -> None:
    response = client.get("/api/v1/records")
    assert response.status_code == 503
    body = response.get_json()
    assert body["code"] == "service_unavailable" and "mobile_service" in body["detail"]


def test_unknown_api_path_is_404_in_the_error_shape(client: FlaskClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404 and response.get_json()["code"] == "not_found"


def test_token_handing_auth_paths_are_refused_to_page_scripts(client: FlaskClient) -> None:
    token = csrf_from(client.get("/login").get_data(as_text=True))
    for path in ("/api/v1/auth/login", "/api/v1/auth/token", "/api/v1/auth/refresh"):
        response = client.post(path, json={"username": "a", "password": "b"}, headers={"X-CSRF-Token": token})
        assert response.status_code == 403, path
        assert response.get_json()["code"] == "forbidden"


def test_app_page_redirects_to_sign_in_without_a_session(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 303 and response.headers["Location"].endswith("/login")


def test_signed_in_session_gets_the_app_shell_with_its_csrf_token(web_app: Flask, client: FlaskClient) -> None:
    store = web_app.extensions["web_sessions"]
    session = store.sign_in(None, TokenPair("access", "refresh", 900), {"id": "u1", "username": "carol"})
    client.set_cookie("sra_session", session.id)
    html = client.get("/").get_data(as_text=True)
    assert session.csrf_token in html and "carol" in html
    assert "access" not in html.replace("access_", "")  # the tokens never reach the page


def test_session_in_redis_is_keyed_by_a_hash_not_the_cookie(web_app: Flask) -> None:
    store = web_app.extensions["web_sessions"]
    session: BrowserSession = store.create_anonymous()
    assert store.redis.get("web:session:" + session.id) is None
    assert store.load(session.id) is not None
    assert store.load("x" * 500) is None


def test_preview_needs_a_signed_in_session(client: FlaskClient) -> None:
    token = csrf_from(client.get("/login").get_data(as_text=True))
    headers = {"X-CSRF-Token": token, "Accept": "application/json"}
    response = client.post("/web/preview", json={"markdown": "# hi"}, headers=headers)
    assert response.status_code == 401 and response.get_json()["code"] == "not_authenticated"


def test_preview_renders_sanitised_html(web_app: Flask, client: FlaskClient) -> None:
    session = web_app.extensions["web_sessions"].sign_in(None, TokenPair("a", "r", 900), {"id": "u2", "username": "d"})
    client.set_cookie("sra_session", session.id)
    response = client.post(
        "/web/preview",
        json={"markdown": "**hi** <script>alert(1)</script>"},
        headers={"X-CSRF-Token": session.csrf_token},
    )
    html = response.get_json()["html"]
    assert "<strong>hi</strong>" in html and "<script" not in html


def test_language_follows_accept_language_and_the_toggle(client: FlaskClient) -> None:
    assert "登录" in client.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"}).get_data(as_text=True)
    assert "Sign in" in client.get("/login", headers={"Accept-Language": "en-GB"}).get_data(as_text=True)
    toggle = client.get("/lang/zh-CN?next=/login")
    assert toggle.status_code == 303 and toggle.headers["Location"].endswith("/login")
    assert "登录" in client.get("/login").get_data(as_text=True)


def test_open_redirects_are_refused(client: FlaskClient) -> None:
    for target in ("//evil.example", "https://evil.example", "/\\evil.example"):
        response = client.get(f"/lang/en?next={target}")
        assert response.headers["Location"] in ("/", "http://localhost/")


HOSTILE_NEXT = (
    "/%09/evil.com",  # browsers drop the tab: //evil.com
    "/%0a/x",  # a newline cannot go into a header
    "/%0d%0aSet-Cookie:%20a=1",
    "%09//evil.com",
    "/%20/evil.com",
    "/%E2%80%8B/evil.com",  # zero-width space
    "/%00/evil.com",
    "///evil.com",
    "javascript:alert(1)",
    "http:/evil.com",
    "evil.com",
    "/%5Cevil.com",
    "/ok?x=%0a",
)


def test_hostile_next_targets_fall_back_to_the_app_page(client: FlaskClient) -> None:
    for target in HOSTILE_NEXT:
        response = client.get(f"/lang/en?next={target}")
        assert response.status_code == 303, target
        assert response.headers["Location"] == "/", target


def test_plain_same_site_next_targets_are_kept(client: FlaskClient) -> None:
    for target, location in (("/login", "/login"), ("/p/a-slug?x=1%262", "/p/a-slug?x=1&2"), ("/%23top", "/#top")):
        response = client.get(f"/lang/en?next={target}")
        assert response.status_code == 303 and response.headers["Location"] == location, target


def test_sign_in_form_with_a_hostile_next_stays_on_the_site(client: FlaskClient) -> None:
    response = client.get("/login?next=/%09/evil.com")
    assert response.status_code == 200
    assert 'value="/"' in response.get_data(as_text=True)


def test_public_page_with_mobile_service_down_is_503_html(client: FlaskClient) -> None:
    response = client.get("/p/some-slug")
    assert response.status_code == 503 and "text/html" in response.content_type


def test_health_is_the_factory_shape(client: FlaskClient) -> None:
    assert client.get("/health").get_json()["service"] == "web_service"


def test_refresh_lock_is_released_only_by_its_owner(web_app: Flask) -> None:
    store = web_app.extensions["web_sessions"]
    session = store.create_anonymous()
    first = store.acquire_refresh_lock(session.id)
    assert first and store.acquire_refresh_lock(session.id) is None
    store.redis.delete(refresh_lock_key(session.id))  # the first holder's lock expired...
    second = store.acquire_refresh_lock(session.id)  # ...and another request took it
    assert second and second != first
    assert store.release_refresh_lock(session.id, first) is False  # the late first holder
    assert store.acquire_refresh_lock(session.id) is None  # still held by the second
    assert store.release_refresh_lock(session.id, second) is True
    assert store.acquire_refresh_lock(session.id) is not None


def test_stored_session_with_unknown_keys_still_loads(web_app: Flask, client: FlaskClient) -> None:
    store = web_app.extensions["web_sessions"]
    session = store.sign_in(None, TokenPair("a", "r", 900), {"id": "u3", "username": "erin"})
    raw = json.loads(store.redis.get(session_key(session.id)))
    store.redis.set(session_key(session.id), json.dumps({**raw, "device": "phone", "schema": 2}))
    loaded = store.load(session.id)
    assert loaded is not None and loaded.username == "erin" and loaded.signed_in
    client.set_cookie("sra_session", session.id)
    assert client.get("/").status_code == 200


def test_unreadable_stored_session_counts_as_none(web_app: Flask, client: FlaskClient) -> None:
    store = web_app.extensions["web_sessions"]
    for index, raw in enumerate(("not json", "[1, 2]", '{"user_id": "u4"}', '{"csrf_token": 5}')):
        session_id = f"broken-session-{index}"
        store.redis.set(session_key(session_id), raw)
        assert store.load(session_id) is None, raw
        client.set_cookie("sra_session", session_id)
        assert client.get("/").status_code == 303, raw  # to the sign-in page, not a 500
    expiry = '{"csrf_token": "c", "access_token": "a", "refresh_token": "r", "access_expires_at": "soon"}'
    store.redis.set(session_key("odd-expiry"), expiry)
    assert store.load("odd-expiry").access_expires_at == 0.0


CORS_ORIGIN = "http://localhost:5173"


@pytest.fixture(scope="module")
def cors_app(web_app_factory: Callable[..., Flask]) -> Flask:
    return web_app_factory(cors_origins=f"{CORS_ORIGIN}, https://app.example.org")


def test_cors_allows_listed_origins_with_credentials(cors_app: Flask) -> None:
    response = cors_app.test_client().get("/health", headers={"Origin": CORS_ORIGIN})
    assert response.headers["Access-Control-Allow-Origin"] == CORS_ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "X-Request-ID" in response.headers["Access-Control-Expose-Headers"]
    assert "Origin" in response.headers["Vary"]


def test_cors_ignores_other_origins(cors_app: Flask, web_app: Flask) -> None:
    other = cors_app.test_client().get("/health", headers={"Origin": "https://evil.example"})
    assert other.status_code == 200 and "Access-Control-Allow-Origin" not in other.headers
    unconfigured = web_app.test_client().get("/health", headers={"Origin": CORS_ORIGIN})
    assert "Access-Control-Allow-Origin" not in unconfigured.headers


def test_cors_preflight_is_answered_here(cors_app: Flask) -> None:
    client = cors_app.test_client()
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,x-csrf-token"}
    response = client.options("/api/v1/records", headers={"Origin": CORS_ORIGIN, **preflight})
    assert response.status_code == 204  # not forwarded (mobile_service is down here)
    assert response.headers["Access-Control-Allow-Origin"] == CORS_ORIGIN
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Headers"] == "content-type,x-csrf-token"
    refused = client.options("/api/v1/records", headers={"Origin": "https://evil.example", **preflight})
    assert refused.status_code == 400 and refused.get_json()["code"] == "bad_request"
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_listed_origin_may_post_with_the_csrf_token_but_not_without(cors_app: Flask) -> None:
    client = cors_app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    headers = {"Origin": CORS_ORIGIN, "Accept": "application/json"}
    assert client.post("/api/v1/records", json={}, headers=headers).status_code == 403
    forwarded = client.post("/api/v1/records", json={}, headers={**headers, "X-CSRF-Token": token})
    assert forwarded.status_code == 503  # past the CSRF check, to the (down) mobile_service
    assert forwarded.headers["Access-Control-Allow-Origin"] == CORS_ORIGIN


def test_worker_exit_closes_the_upstream_pool_and_redis(web_app_factory: Callable[..., Flask]) -> None:
    app = web_app_factory()
    client = app.extensions["redis"]
    client.ping()
    connection_id = client.client_id()
    close_web_resources(app)
    assert app.extensions["web_forwarder"].client.is_closed
    observer = redis.Redis.from_url(app.extensions["settings"].redis_url, decode_responses=True)
    try:
        for _ in range(100):  # the server notices the closed socket on its next loop turn
            if all(entry["id"] != str(connection_id) for entry in observer.client_list()):
                break
            time.sleep(0.02)
        assert all(entry["id"] != str(connection_id) for entry in observer.client_list())
    finally:
        observer.close()
