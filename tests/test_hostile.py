"""Hostile input at the webhook: every refusal is the contract's JSON error, and nothing refused is stored."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from dlrq.core.receipt import MAX_FIELDS, MAX_NAME_LENGTH, MAX_VALUE_LENGTH
from ingest.app import create_app
from ingest.params import MAX_BODY

from .test_ingest_http import PATH, stored

pytestmark = pytest.mark.integration
GIGABYTE = 1 << 30
CHUNK = 64 * 1024
VALID = {"messageId": "0A0000001234567B", "status": "delivered", "err-code": "0"}


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


def stream(client: TestClient, headers: list[tuple[bytes, bytes]], total: int) -> tuple[int, dict, int]:
    """Offer `total` bytes in 64 KiB chunks straight through ASGI; return status, body and bytes taken."""
    taken = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal taken
        size = min(CHUNK, total - taken)
        taken += size
        return {"type": "http.request", "body": b"a" * size, "more_body": taken < total}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": PATH, "raw_path": PATH.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), *headers],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    client.portal.call(client.app, scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), taken


def test_a_gigabyte_streamed_without_length_is_cut_off_at_the_limit(client, r, settings):
    status, body, taken = stream(client, [(b"transfer-encoding", b"chunked")], GIGABYTE)
    assert (status, body["error"]) == (413, "body_too_large")
    assert taken <= MAX_BODY + CHUNK, f"read {taken} bytes of a {GIGABYTE}-byte body"
    assert stored(r, settings) == []


def test_a_declared_gigabyte_is_refused_before_reading(client, r, settings):
    status, body, taken = stream(client, [(b"content-length", str(GIGABYTE).encode())], GIGABYTE)
    assert (status, body["error"], taken) == (413, "body_too_large", 0)
    assert stored(r, settings) == []


HOSTILE = [
    # (name, request kwargs, expected status, expected error)
    ("too many fields", {"json": {**VALID, **{f"f{i}": "x" for i in range(MAX_FIELDS)}}}, 400, "malformed_field"),
    ("long field name", {"json": {**VALID, "n" * (MAX_NAME_LENGTH + 1): "x"}}, 400, "malformed_field"),
    ("long value", {"json": {**VALID, "client-ref": "x" * (MAX_VALUE_LENGTH + 1)}}, 400, "malformed_field"),
    ("nested object", {"json": {**VALID, "price": {"amount": "0.03"}}}, 400, "malformed_field"),
    ("nested list", {"json": {**VALID, "messageId": ["a", "b"]}}, 400, "malformed_field"),
    ("JSON array body", {"json": [VALID]}, 400, "not_an_object"),
    ("JSON string body", {"json": "messageId"}, 400, "not_an_object"),
    ("truncated JSON", {"content": json.dumps(VALID)[:-1], "headers": {"content-type": "application/json"}},
     400, "bad_json"),
    ("Latin-1 JSON", {"content": '{"messageId": "é", "status": "delivered"}'.encode("latin-1"),
                      "headers": {"content-type": "application/json"}}, 400, "bad_encoding"),
    ("lone surrogate escape", {"content": b'{"messageId": "\\ud800", "status": "delivered"}',
                               "headers": {"content-type": "application/json"}}, 400, "bad_encoding"),
    ("non-UTF-8 form", {"content": b"messageId=%C3%28&status=delivered",
                        "headers": {"content-type": "application/x-www-form-urlencoded"}}, 400, "bad_encoding"),
    ("non-UTF-8 query", {"params": None, "url": PATH + "?messageId=%FF%FE&status=delivered"}, 400, "bad_encoding"),
    ("err-code not a number", {"json": {**VALID, "err-code": "0x1"}}, 400, "malformed_field"),
    ("empty messageId", {"json": {**VALID, "messageId": ""}}, 400, "missing_field"),
    ("no content type", {"content": b"messageId=1&status=delivered", "headers": {"content-type": ""}},
     415, "unsupported_media_type"),
    ("XML", {"content": b"<receipt/>", "headers": {"content-type": "application/xml"}}, 415, "unsupported_media_type"),
]


@pytest.mark.parametrize("kwargs,status,error", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_requests_are_refused_with_a_json_error(client, r, settings, kwargs, status, error):
    kwargs = dict(kwargs)
    url = kwargs.pop("url", PATH)
    kwargs.pop("params", None)
    response = client.request("GET" if url != PATH else "POST", url, **kwargs)
    assert (response.status_code, response.json()["error"]) == (status, error), response.text
    assert response.json()["detail"]
    assert stored(r, settings) == []
