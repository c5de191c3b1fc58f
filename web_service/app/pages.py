"""Pages of the web app. The full web app arrives with the web_service issue."""

from flask import Blueprint

pages = Blueprint("pages", __name__)


@pages.get("/")
def index() -> tuple[str, int, dict[str, str]]:
    return (
        "<!doctype html><meta charset=utf-8><title>Smart Record Assistant</title>"
        "<h1>Smart Record Assistant</h1><p>The web app is being built; the API services are up.</p>",
        200,
        {"Content-Type": "text/html; charset=utf-8"},
    )
