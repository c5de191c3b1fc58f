"""Public pages ``GET /p/<slug>``: a published record, server-rendered from mobile_service's
``GET /api/v1/public/records/{slug}``, with sanitised Markdown, its images and Open Graph tags.
Once the record is unpublished (or deleted) the page is a 404."""

from __future__ import annotations

import urllib.parse
from typing import Any

from flask import Blueprint, Response, current_app, make_response, render_template, request

from common.errors import UpstreamError
from common.forwarding_wsgi import WsgiForwarder, upstream_errors
from web_service.app import auth
from web_service.app.config import WebSettings
from web_service.app.markdown_render import plain_excerpt, render_markdown

public_pages = Blueprint("public_pages", __name__)

SERVICE = "mobile_service"
MAX_SLUG_CHARS = 200


def fetch_public_record(slug: str) -> dict[str, Any] | None:
    """The published record, or None when there is none under ``slug``."""
    forwarder: WsgiForwarder = current_app.extensions["web_forwarder"]
    base_url = forwarder.base_url(SERVICE)
    path = "/api/v1/public/records/" + urllib.parse.quote(slug, safe="")
    with upstream_errors(SERVICE, base_url, forwarder.config.timeout_seconds):
        response = forwarder.client.get(base_url + path, headers={"X-Request-ID": auth.request_id()})
    if response.status_code in (404, 410, 422):
        return None
    if response.status_code != 200:
        raise UpstreamError(f"{SERVICE} answered {response.status_code} for a public record")
    body = response.json()
    return body if isinstance(body, dict) else None


def public_root(settings: WebSettings) -> str:
    """The scheme and host for absolute links: configured, never taken from an unlisted Host."""
    if settings.public_base_url:
        return settings.public_base_url
    hosts = settings.public_host_list
    asked = request.host.lower()
    return f"{request.scheme}://{asked}" if asked in hosts else f"http://{hosts[0]}"


def image_ids(record: dict[str, Any]) -> list[str]:
    ids = record.get("attachments") or []
    return [str(i) for i in ids if isinstance(i, str) and i.replace("-", "").isalnum()]


def not_found_page() -> Response:
    response = make_response(render_template("not_found.html"), 404)
    response.headers["Cache-Control"] = "no-store"
    return response


@public_pages.get("/p/<slug>")
def public_record(slug: str) -> Response:
    if len(slug) > MAX_SLUG_CHARS:
        return not_found_page()
    record = fetch_public_record(slug)
    if record is None:
        return not_found_page()
    content = str(record.get("content") or "")
    body_html = render_markdown(content)
    images = image_ids(record)
    # Attachments the text already shows inline are not repeated in the gallery below it.
    gallery = [image_id for image_id in images if f"/api/v1/images/{image_id}/" not in content]
    root = public_root(current_app.extensions["settings"])
    # Plain text for link previews: a summary may hold Markdown too, so it goes through the renderer.
    summary = str(record.get("summary") or "").strip()
    description = plain_excerpt(render_markdown(summary) if summary else body_html)
    response = make_response(
        render_template(
            "public.html",
            record=record,
            title=str(record.get("title") or "Untitled"),
            body_html=body_html,
            images=gallery,
            tags=[str(t) for t in record.get("tags") or []],
            description=description,
            page_url=f"{root}/p/{urllib.parse.quote(slug, safe='')}",
            og_image=f"{root}/api/v1/images/{images[0]}/content" if images else None,
        )
    )
    # Revalidated every time: an unpublished record must turn into a 404 at once.
    response.headers["Cache-Control"] = "no-cache"
    return response
