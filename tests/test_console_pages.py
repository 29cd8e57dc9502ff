"""What a browser fetches around the console's pages (no browser needed)."""

from __future__ import annotations

from starlette.testclient import TestClient

from dlrq.core.settings import Settings
from ingest.api import create_api


def test_the_browsers_favicon_request_finds_the_consoles_icon(redis_url):
    with TestClient(create_api(Settings(redis_url=redis_url, api_token="console-token-0123456789"))) as api:
        asked = api.get("/favicon.ico", follow_redirects=False)
        icon = api.get("/favicon.ico")
        login = api.get("/console/login")
    assert asked.status_code == 308 and asked.headers["location"] == "/console/static/favicon.svg"
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert 'rel="icon"' in login.text and "favicon.svg" in login.text
