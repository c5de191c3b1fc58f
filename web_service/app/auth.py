"""The browser session of the current request: cookie, CSRF check, transparent token refresh,
sign-in and sign-out. Pages and the same-origin API both go through here."""

from __future__ import annotations

import time
import urllib.parse

from flask import Flask, Response, current_app, g, request

from common.errors import Forbidden, InvalidToken, NotAuthenticated
from web_service.app.config import WebSettings
from web_service.app.sessions import BrowserSession, SessionStore
from web_service.app.user_api import UpstreamAnswer, UserApi

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
FORM_MIMETYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
FORMS_CHECKED_BY_VIEW = frozenset({"/login", "/register"})
_REFRESH_WAIT_SECONDS = 5.0


def settings() -> WebSettings:
    return current_app.extensions["settings"]


def store() -> SessionStore:
    return current_app.extensions["web_sessions"]


def user_api() -> UserApi:
    return current_app.extensions["web_user_api"]


def request_id() -> str:
    return str(g.get("request_id", "-"))


def current_session() -> BrowserSession | None:
    """The session named by the cookie, or None (no cookie, expired, or signed out)."""
    if "browser_session" not in g:
        g.browser_session = store().load(request.cookies.get(settings().session_cookie_name))
        if g.browser_session is not None and g.browser_session.user_id:
            g.user_id = g.browser_session.user_id
    return g.browser_session


def ensure_session() -> BrowserSession:
    """The current session, or a new anonymous one (it carries the CSRF token of the sign-in forms)."""
    session = current_session()
    if session is None:
        session = store().create_anonymous()
        use_session(session)
    return session


def use_session(session: BrowserSession | None) -> None:
    """Make ``session`` the request's session; the cookie is (re)set or cleared on the way out."""
    g.browser_session = session
    g.session_cookie_changed = True


def write_session_cookie(response: Response) -> Response:
    if not g.get("session_cookie_changed"):
        return response
    cfg = settings()
    session = g.get("browser_session")
    if session is None:
        response.delete_cookie(cfg.session_cookie_name, path="/", httponly=True, samesite="Lax")
        return response
    response.set_cookie(
        cfg.session_cookie_name,
        session.id,
        max_age=cfg.session_ttl_seconds if session.signed_in else cfg.anonymous_session_ttl_seconds,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=cfg.env == "production",
    )
    return response


def _same_origin(origin: str) -> bool:
    parsed = urllib.parse.urlsplit(origin)
    return parsed.scheme in ("http", "https") and parsed.netloc == request.host


def csrf_token_valid() -> bool:
    """The request carries the session's CSRF token (``X-CSRF-Token``, or the form field on pages)."""
    candidate = request.headers.get(CSRF_HEADER)
    # Only page forms carry the field; API bodies (uploads) are never parsed here.
    if candidate is None and not request.path.startswith("/api/") and request.mimetype in FORM_MIMETYPES:
        candidate = request.form.get(CSRF_FIELD)
    session = current_session()
    return session is not None and session.csrf_matches(candidate)


def check_csrf() -> None:
    """Every unsafe request needs the session's CSRF token (form field or ``X-CSRF-Token``) and,
    when the browser names one, a same-origin ``Origin``. The sign-in and sign-up forms check the
    token in their views, so that an expired form is shown again with a fresh token. Origins listed
    in ``CORS_ORIGINS`` count as the site's own (they still need the token)."""
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("Origin")
    if origin and origin != "null" and not _same_origin(origin) and origin not in settings().cors_origin_list:
        raise Forbidden("Cross-site request refused")
    if request.path in FORMS_CHECKED_BY_VIEW and request.method == "POST":
        return
    if not csrf_token_valid():
        raise Forbidden("Missing or wrong CSRF token; reload the page and try again")


def drop_session() -> None:
    """Forget the current session (its tokens no longer work) and clear its cookie."""
    session = current_session()
    if session is not None:
        store().delete(session.id)
    use_session(None)


def sign_in(username: str, password: str) -> BrowserSession:
    """Sign in with a fresh session id. A session that was already signed in (another account,
    or the same one again) has its tokens revoked at user_service before it is dropped."""
    api = user_api()
    tokens = api.login(username, password, request_id=request_id(), client_host=request.remote_addr)
    user = api.me(tokens.access_token, request_id=request_id())
    previous = current_session()
    if previous is not None and previous.signed_in:
        revoke_tokens(previous)
    session = store().sign_in(previous, tokens, user)
    use_session(session)
    g.user_id = session.user_id
    return session


def revoke_tokens(session: BrowserSession) -> None:
    """Revoke the session's access and refresh tokens at user_service (best effort: tokens that
    are already expired or revoked have nothing left to revoke)."""
    try:
        token = fresh_access_token(session)
        user_api().logout(token, session.refresh_token, request_id=request_id())
    except (NotAuthenticated, UpstreamAnswer):
        pass


def sign_out() -> None:
    """Revoke both tokens at user_service, then drop the session and its cookie."""
    session = current_session()
    if session is None:
        return
    if session.signed_in:
        revoke_tokens(session)
    drop_session()


def fresh_access_token(session: BrowserSession) -> str:
    """The session's access token, refreshed first when it is about to expire.

    One request per session refreshes (a Redis lock): refresh tokens rotate, and reusing a rotated
    one would revoke the whole family, so concurrent requests wait for the winner's new pair. The
    winner refreshes with the refresh token stored *now* (another request may have rotated the
    pair since this request read its session), and releases the lock only if it still owns it.
    """
    if not session.signed_in:
        raise NotAuthenticated("Sign in first")
    margin = settings().token_refresh_margin_seconds
    if session.access_expires_at - margin > time.time():
        return str(session.access_token)
    sessions = store()
    lock_owner = sessions.acquire_refresh_lock(session.id)
    if lock_owner is not None:
        try:
            latest = sessions.load(session.id)
            if latest is None or not latest.signed_in:
                use_session(None)
                raise InvalidToken("Your session has expired; sign in again")
            _adopt(session, latest)
            if session.access_expires_at - margin > time.time():
                return str(session.access_token)
            try:
                tokens = user_api().refresh(str(session.refresh_token), request_id=request_id())
            except UpstreamAnswer as exc:
                if exc.status_code in (401, 403, 404):
                    sessions.delete(session.id)
                    use_session(None)
                    raise InvalidToken("Your session has expired; sign in again") from exc
                raise
            sessions.store_tokens(session, tokens)
            return str(session.access_token)
        finally:
            sessions.release_refresh_lock(session.id, lock_owner)
    deadline = time.monotonic() + _REFRESH_WAIT_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.05)
        latest = sessions.load(session.id)
        if latest is None:
            raise InvalidToken("Your session has expired; sign in again")
        if latest.access_expires_at - margin > time.time():
            return _adopt(session, latest)
    raise InvalidToken("Could not refresh the session in time; try again")


def _adopt(session: BrowserSession, latest: BrowserSession) -> str:
    session.access_token = latest.access_token
    session.refresh_token = latest.refresh_token
    session.access_expires_at = latest.access_expires_at
    return str(session.access_token)


def install_session_hooks(app: Flask) -> None:
    app.before_request(check_csrf)
    app.after_request(write_session_cookie)
