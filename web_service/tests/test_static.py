from flask import Flask
from flask.testing import FlaskClient


def fingerprinted(app: Flask, name: str) -> str:
    return app.extensions["web_assets"][name].fingerprinted


def test_fingerprinted_asset_is_cached_long_with_an_etag(web_app: Flask, client: FlaskClient) -> None:
    response = client.get("/static/" + fingerprinted(web_app, "app.js"))
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/javascript") or "javascript" in response.content_type
    assert "max-age=31536000" in response.headers["Cache-Control"] and "immutable" in response.headers["Cache-Control"]
    assert response.headers["ETag"].startswith('"')


def test_plain_name_revalidates_and_if_none_match_answers_304(client: FlaskClient) -> None:
    first = client.get("/static/app.css")
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-cache"
    again = client.get("/static/app.css", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""


def test_pages_link_the_fingerprinted_assets(web_app: Flask, client: FlaskClient) -> None:
    html = client.get("/login").get_data(as_text=True)
    assert "/static/" + fingerprinted(web_app, "app.css") in html


def test_unknown_or_traversing_static_path_is_404(client: FlaskClient) -> None:
    for path in ("/static/nope.js", "/static/../main.py", "/static/%2e%2e/main.py"):
        assert client.get(path).status_code == 404
