"""Static files with fingerprinted URLs, ETags and long caching.

At start-up every file under ``res/static`` gets a content hash; templates link
``/static/<name>.<hash>.<ext>`` (``asset_url``), which is served with
``Cache-Control: public, max-age=<long>, immutable``. The plain name still works, with
``no-cache`` so the browser revalidates by ETag. ``If-None-Match`` answers 304.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, request

from common.errors import NotFound

STATIC_DIR = Path(__file__).resolve().parent.parent / "res" / "static"

static_files = Blueprint("static_files", __name__)


@dataclass(frozen=True, slots=True)
class Asset:
    name: str
    fingerprinted: str
    digest: str
    body: bytes
    mimetype: str


def fingerprinted_name(name: str, digest: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return f"{stem}.{digest}.{ext}" if dot else f"{name}.{digest}"


def load_assets(directory: Path = STATIC_DIR) -> dict[str, Asset]:
    """Every static file by plain and by fingerprinted name (small files, held in memory)."""
    assets: dict[str, Asset] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = path.relative_to(directory).as_posix()
        body = path.read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:12]
        mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if mimetype.startswith("text/") or mimetype in ("application/javascript", "application/json"):
            mimetype += "; charset=utf-8"
        asset = Asset(name, fingerprinted_name(name, digest), digest, body, mimetype)
        assets[name] = asset
        assets[asset.fingerprinted] = asset
    return assets


def asset_url(name: str) -> str:
    assets: dict[str, Asset] = current_app.extensions["web_assets"]
    asset = assets.get(name)
    return f"/static/{asset.fingerprinted if asset else name}"


@static_files.get("/static/<path:name>")
def serve_static(name: str) -> Response:
    assets: dict[str, Asset] = current_app.extensions["web_assets"]
    asset = assets.get(name)
    if asset is None:
        raise NotFound("No such file")
    immutable = name == asset.fingerprinted
    max_age = current_app.extensions["settings"].static_max_age_seconds
    headers = {
        "ETag": f'"{asset.digest}"',
        "Cache-Control": f"public, max-age={max_age}, immutable" if immutable else "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if request.if_none_match.contains_weak(asset.digest):
        return Response(status=304, headers=headers)
    return Response(asset.body, headers={**headers, "Content-Type": asset.mimetype})


def install_static(app: Flask) -> None:
    app.extensions["web_assets"] = load_assets()
    app.jinja_env.globals["asset_url"] = asset_url
    app.register_blueprint(static_files)
