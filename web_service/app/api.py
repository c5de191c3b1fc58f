"""The same-origin API: ``/api/v1/...`` from the page scripts, forwarded to the owning service with
the session's bearer token (refreshed when due) through the one forwarding logic of ``common``.

Auth endpoints that would hand tokens to page scripts are answered here instead: the tokens stay
on the server, so ``/auth/login``, ``/auth/token`` and ``/auth/refresh`` are refused (sign in
through ``POST /login``) and ``/auth/logout`` signs the browser session out.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from common.errors import Forbidden, NotFound
from common.forwarding_rules import FORWARD_ROUTES, ForwardRoute, upstream_for
from common.forwarding_wsgi import WsgiForwarder
from web_service.app import auth

api = Blueprint("api", __name__)

# Records, sync and public records are mobile_service's own; the rest follow the shared table.
WEB_FORWARD_ROUTES: tuple[ForwardRoute, ...] = (
    ForwardRoute("/api/v1/records", "mobile_service"),
    ForwardRoute("/api/v1/sync", "mobile_service"),
    ForwardRoute("/api/v1/public", "mobile_service"),
    *FORWARD_ROUTES,
)
TOKEN_HANDING_PATHS = frozenset({"/api/v1/auth/login", "/api/v1/auth/token", "/api/v1/auth/refresh"})
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@api.route("/api/v1/<path:rest>", methods=METHODS)
def forward(rest: str) -> Response:
    path = request.path.rstrip("/") or request.path
    if path in TOKEN_HANDING_PATHS:
        raise Forbidden("The browser's tokens stay on the server: sign in with POST /login")
    if path == "/api/v1/auth/logout" and request.method == "POST":
        auth.sign_out()
        return Response(status=204)
    if upstream_for(request.path, WEB_FORWARD_ROUTES) is None:
        raise NotFound(f"No API at {request.path}")
    session = auth.current_session()
    token = auth.fresh_access_token(session) if session is not None and session.signed_in else None
    request.max_content_length = current_app.extensions["settings"].api_max_body_bytes
    forwarder: WsgiForwarder = current_app.extensions["web_forwarder"]
    response = forwarder.forward(request, request_id=auth.request_id(), token=token)
    if token is not None and response.status_code == 401:
        # The tokens were revoked elsewhere (password change, deactivation): the session is over.
        auth.drop_session()
    return response
