"""Pages of the web app: sign-up, sign-in, sign-out, the app shell, the language toggle and the
editor's Markdown preview. The app itself is ``res/static/app.js`` talking to ``/api/v1``."""

from __future__ import annotations

import unicodedata
import urllib.parse
from typing import Any

from flask import Blueprint, Response, jsonify, make_response, redirect, render_template, request

from common.errors import AppError, BadRequest, NotAuthenticated
from web_service.app import auth, i18n
from web_service.app.i18n import LANG_COOKIE, LANGUAGES, normalise_language
from web_service.app.markdown_render import render_markdown

pages = Blueprint("pages", __name__)

MAX_PREVIEW_CHARS = 100_000


def _safe_next(target: str | None) -> str:
    """A same-site path to go to after a page, else ``/``.

    Refused: any whitespace or control/format character (browsers strip tabs and newlines from
    URLs, so ``/%09/evil.com``, a tab, would become ``//evil.com``; a newline cannot go into a header),
    a backslash (read as ``/`` by browsers), and anything that is not a plain path: a scheme,
    a host, or a path not starting with exactly one ``/``."""
    if not target or target.startswith("//") or "\\" in target or any(_unsafe_char(ch) for ch in target):
        return "/"
    try:
        parts = urllib.parse.urlsplit(target)
    except ValueError:
        return "/"
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return "/"
    return target


def _unsafe_char(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch).startswith(("C", "Z"))


def _readable(exc: AppError) -> str:
    """The error in the page's language: the field a validation error names ("Username is not
    valid"), else the sentence for its code; the API's own (English) detail only when neither
    has a translation."""
    lang = i18n.current_language()
    if isinstance(exc.detail, list):  # FastAPI's validation list
        for item in exc.detail:
            loc = item.get("loc", []) if isinstance(item, dict) else []
            key = f"field.{loc[-1]}" if loc else ""
            if key and i18n.translate(lang, key) != key:
                return i18n.translate(lang, "error.field_invalid", field=i18n.translate(lang, key))
    key = "error.account_taken" if exc.code == "conflict" else f"error.code.{exc.code}"
    text = i18n.translate(lang, key)
    if text != key:
        return text
    return str(exc.detail) if not isinstance(exc.detail, list) else i18n.translate(lang, "error.generic")


def _form_page(template: str, status: int = 200, **context: Any) -> Response:
    session = auth.ensure_session()
    response = make_response(render_template(template, csrf_token=session.csrf_token, **context), status)
    response.headers["Cache-Control"] = "no-store"
    return response


@pages.get("/")
def index() -> Response:
    session = auth.current_session()
    if session is None or not session.signed_in:
        return redirect("/login", code=303)
    response = make_response(
        render_template("app.html", csrf_token=session.csrf_token, username=session.username or "")
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@pages.get("/login")
def login_form() -> Response:
    session = auth.current_session()
    if session is not None and session.signed_in:
        return redirect(_safe_next(request.args.get("next")), code=303)
    return _form_page("login.html", next=_safe_next(request.args.get("next")))


@pages.post("/login")
def login_submit() -> Response:
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    target = _safe_next(request.form.get("next"))
    if not auth.csrf_token_valid():
        return _form_page("login.html", 403, error_key="error.form_expired", username=username, next=target)
    if not username or not password:
        return _form_page("login.html", 400, error_key="error.missing_fields", username=username, next=target)
    try:
        auth.sign_in(username, password)
    except AppError as exc:
        if exc.status_code >= 500:
            raise
        key = "error.rate_limited" if exc.status_code == 429 else "error.bad_credentials"
        response = _form_page("login.html", exc.status_code, error_key=key, username=username, next=target)
        response.headers.update(exc.headers)
        return response
    return redirect(target, code=303)


@pages.get("/register")
def register_form() -> Response:
    return _form_page("register.html")


@pages.post("/register")
def register_submit() -> Response:
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    email = request.form.get("email", "").strip() or None
    if not auth.csrf_token_valid():
        return _form_page("register.html", 403, error_key="error.form_expired", username=username)
    if not username or not password:
        return _form_page("register.html", 400, error_key="error.missing_fields", username=username)
    try:
        auth.user_api().register(username, password, email=email, request_id=auth.request_id())
        auth.sign_in(username, password)
    except AppError as exc:
        if exc.status_code >= 500:
            raise
        return _form_page("register.html", exc.status_code, error=_readable(exc), username=username)
    return redirect("/", code=303)


@pages.post("/logout")
def logout() -> Response:
    auth.sign_out()
    return redirect("/login", code=303)


@pages.get("/lang/<code>")
def choose_language(code: str) -> Response:
    lang = normalise_language(code)
    if lang not in LANGUAGES:
        raise BadRequest(f"Unknown language; choose one of {', '.join(LANGUAGES)}")
    response = redirect(_safe_next(request.args.get("next")), code=303)
    response.set_cookie(LANG_COOKIE, str(lang), max_age=365 * 86400, path="/", samesite="Lax")
    return response


@pages.post("/web/preview")
def preview() -> Response:
    """The editor's preview: the same renderer and sanitiser as the public pages."""
    session = auth.current_session()
    if session is None or not session.signed_in:
        raise NotAuthenticated("Sign in first")
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("markdown"), str):
        raise BadRequest('Send {"markdown": "..."}')
    if len(body["markdown"]) > MAX_PREVIEW_CHARS:
        raise BadRequest(f"Markdown is limited to {MAX_PREVIEW_CHARS} characters")
    return jsonify({"html": render_markdown(body["markdown"])})
