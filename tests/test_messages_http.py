"""POST /messages and GET /messages/{id} over HTTP, against a real server; `dlrq register`."""

import json

import pytest
from starlette.testclient import TestClient

from dlrq.core import keys
from dlrq.core.receipt import Receipt
from dlrq.core.settings import Settings
from ingest.api import create_api
from ingest.app import create_app
from tests.support.processes import dlrq, dlrq_env
from tests.support.receipts import receipt
from tests.support.sends import DOCS_TWO_PARTS, send
from workers.batch import apply

pytestmark = pytest.mark.integration


@pytest.fixture
def client(settings):
    """The api, which registers sends as the ingest does, and shows messages."""
    with TestClient(create_api(settings)) as c:
        yield c


def test_register_then_find_by_any_part(client, r, settings):
    response = client.post("/messages", json=DOCS_TWO_PARTS)
    assert response.status_code == 201
    assert response.json() == {"id": "0A0000000123ABCD1", "parts": ["0A0000000123ABCD1", "0A0000000123ABCD2"]}
    again = client.post("/messages", json=DOCS_TWO_PARTS)
    assert (again.status_code, again.json()) == (200, response.json())
    apply(r, [Receipt(receipt("0A0000000123ABCD2", "delivered", 3), "t")], settings)
    view = client.get("/messages/0A0000000123ABCD2").json()
    assert view == client.get("/messages/0A0000000123ABCD1").json()
    assert view["status"] == "pending" and view["parts_expected"] == 2
    assert view["client_ref"] == "my-personal-reference"
    assert [p["status"] for p in view["parts"]] == [None, "delivered"]


@pytest.mark.parametrize(
    "body, headers, status, code",
    [
        (b"{", {"content-type": "application/json"}, 400, "bad_json"),
        (b"[]", {"content-type": "application/json"}, 400, "not_an_object"),
        (b'{"messages": []}', {"content-type": "application/json"}, 400, "missing_field"),
        (b"messages=1", {"content-type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        (b"x" * 70_000, {"content-type": "application/json"}, 413, "body_too_large"),
    ],
)
def test_bad_registrations_are_refused_and_store_nothing(client, r, body, headers, status, code):
    response = client.post("/messages", content=body, headers=headers)
    assert (response.status_code, response.json()["error"]) == (status, code)
    assert set(r.keys()) <= {keys.READY.encode()}, "nothing but the readiness probe's own key"


def test_retry_of_an_unknown_message_is_404_and_a_stolen_part_409(client):
    assert client.post("/messages", json=send(["A"], retry_of="NOPE")).status_code == 404
    assert client.post("/messages", json=send(["A", "B"])).status_code == 201
    response = client.post("/messages", json=send(["C", "B"]))
    assert (response.status_code, response.json()["error"]) == (409, "conflict")


def test_registration_needs_the_api_token_when_set(redis_url):
    settings = Settings(redis_url=redis_url, api_token="s3cret")
    with TestClient(create_app(settings)) as c:
        assert c.post("/messages", json=send(["A"])).status_code == 401
        ok = c.post("/messages", json=send(["A"]), headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 201


def test_dlrq_register_reads_a_file_or_stdin(redis_url, tmp_path):
    path = tmp_path / "send.json"
    path.write_text(json.dumps(DOCS_TWO_PARTS))
    env = dlrq_env(redis_url)
    from_file = dlrq(env, "register", str(path))
    from_stdin = dlrq(env, "register", "-", input=path.read_text())
    assert json.loads(from_file.stdout) == json.loads(from_stdin.stdout) == {
        "id": "0A0000000123ABCD1", "parts": ["0A0000000123ABCD1", "0A0000000123ABCD2"]}
    bad = dlrq(env, "register", "-", input="{}", check=False)
    assert bad.returncode != 0 and "missing_field" in bad.stderr
