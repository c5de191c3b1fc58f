"""Steps a browser takes against web_service, for the end-to-end tests (plain HTTP, cookies kept)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
BOOT = re.compile(r'<script type="application/json" id="boot">(.*?)</script>', re.S)
PASSWORD = "correct horse battery"


class WebUser:
    """One browser: its own cookie jar, signing up through the real forms."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=30.0, follow_redirects=False)
        self.username = "web_" + uuid.uuid4().hex[:10]
        self.csrf = ""

    def form_csrf(self, path: str) -> str:
        response = self.client.get(path)
        assert response.status_code == 200, response.text
        match = CSRF_FIELD.search(response.text)
        assert match, f"{path} has no csrf_token field"
        return match.group(1)

    def sign_up(self) -> WebUser:
        token = self.form_csrf("/register")
        response = self.client.post(
            "/register", data={"username": self.username, "password": PASSWORD, "csrf_token": token}
        )
        assert response.status_code == 303 and response.headers["location"] == "/", response.text
        self.csrf = self.page_csrf()
        return self

    def sign_in(self) -> httpx.Response:
        token = self.form_csrf("/login")
        response = self.client.post(
            "/login", data={"username": self.username, "password": PASSWORD, "csrf_token": token}
        )
        if response.status_code == 303:
            self.csrf = self.page_csrf()
        return response

    def page_csrf(self) -> str:
        page = self.client.get("/")
        assert page.status_code == 200, page.text
        match = BOOT.search(page.text)
        assert match, "the app page carries no boot data"
        return json.loads(match.group(1))["csrf"]

    @property
    def session_cookie(self) -> str:
        return self.client.cookies["sra_session"]

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-CSRF-Token": self.csrf, **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def close(self) -> None:
        self.client.close()
