"""web_service application code: pages, browser sessions and the same-origin API."""
