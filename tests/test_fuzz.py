"""Hostile input, generated: random methods, content types, bodies, encodings and parameter sets.

Never a 5xx, and never a stored receipt the contract calls invalid. Checked against the
contract's words, not against the ingest's own validator.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from urllib.parse import quote_from_bytes, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rq import Queue
from rq.serializers import JSONSerializer
from starlette.testclient import TestClient

from dlrq.core.settings import Settings
from ingest.app import create_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PATH = "/webhooks/delivery-receipt"
REFUSALS = {400, 405, 413, 415}
FIELDS = ["messageId", "status", "err-code", "msisdn", "to", "network-code", "price", "scts",
          "message-timestamp", "api-key", "client-ref", "sig", "timestamp", "nonce"]

names = st.one_of(st.sampled_from(FIELDS), st.text(max_size=70))
scalars = st.one_of(st.text(max_size=30), st.sampled_from(["", "0", "3", "x9", "delivered", "accepted", "٣"]),
                    st.integers(), st.floats(), st.booleans(), st.none())
values = st.one_of(scalars, st.lists(scalars, max_size=2), st.dictionaries(st.text(max_size=3), scalars, max_size=2),
                   st.text(min_size=1000, max_size=1100))
params = st.dictionaries(names, values, max_size=16)
# Close to a receipt, so that many are accepted and the stored ones can be checked: ids and the fields
# whose shape the ingest checks (price, scts, message-timestamp) well-formed or not, the rest anything.
ids = st.one_of(st.from_regex(r"[A-Za-z0-9._:~-]{1,20}", fullmatch=True), st.text(max_size=20))
SHAPED = ("price", "scts", "message-timestamp")
shaped = st.fixed_dictionaries({}, optional={
    "price": st.sampled_from(["0.03330000", "0", "1e30", "Infinity"]), "scts": st.sampled_from(["2001011400", "x"]),
    "message-timestamp": st.sampled_from(["2020-01-01 14:00:00", "9999-12-31 23:59:59", "nope"])})
free = st.dictionaries(st.one_of(st.sampled_from([f for f in FIELDS if f not in SHAPED]), st.text(max_size=70)),
                       scalars, max_size=6)
near_receipts = st.builds(
    lambda mid, status, code, extra, more: {**extra, **more, "messageId": mid, "status": status, "err-code": code},
    ids, st.sampled_from(["delivered", "failed", "", "DELIVRD"]),
    st.one_of(st.sampled_from(["0", "2", "03"]), st.text(max_size=3)), free, shaped,
)
params = st.one_of(params, near_receipts, near_receipts)


def form(p: dict) -> bytes:
    return urlencode({k: v if isinstance(v, str) else json.dumps(v) for k, v in p.items()}).encode()


bodies = st.one_of(
    params.map(lambda p: json.dumps(p).encode()),
    params.map(form),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(scalars, max_size=3).map(lambda v: json.dumps(v).encode()),
    st.just(b'{"messageId": "\\ud800", "status": "delivered"}'),
    st.integers(65_000, 70_000).map(lambda n: b'{"messageId": "m", "status": "delivered", "x": "' + b"a" * n + b'"}'),
)
queries = st.one_of(st.just(""), params.map(lambda p: form(p).decode()), st.binary(max_size=40).map(quote_from_bytes))
content_types = st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", "",
                                 "application/json; charset=utf-8", "APPLICATION/JSON", "multipart/form-data; boundary=x"])
methods = st.sampled_from(["GET", "POST", "POST", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])


def contract_valid(record: dict) -> bool:
    """The documented rules (docs/http-api.md), written out here rather than taken from the ingest."""
    p = record.get("params")
    return (
        isinstance(record.get("received_at"), str)
        and isinstance(p, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in p.items())
        and bool(p.get("messageId")) and bool(p.get("status"))
        and ("err-code" not in p or (p["err-code"].isascii() and p["err-code"].isdigit()))
        and re.fullmatch(r"[A-Za-z0-9._:~-]{1,128}", p["messageId"]) is not None
        and (not p.get("price") or (re.fullmatch(r"[0-9]+(\.[0-9]*)?", p["price"]) and float(p["price"]) <= 1000))
        and (not p.get("message-timestamp") or _soon(p["message-timestamp"]))
    )


def _soon(moment: str) -> bool:
    """A time no later than a day from now."""
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        return False
    return (parsed.replace(tzinfo=parsed.tzinfo or timezone.utc) - datetime.now(timezone.utc)).total_seconds() < 86_400


@pytest.fixture
def client(redis_url):
    with TestClient(create_app(Settings(redis_url=redis_url))) as c:
        yield c


def test_ten_thousand_hostile_requests(client, r, redis_url):
    answered: list[int] = []

    @settings(max_examples=10_000, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(method=methods, query=queries, body=bodies, content_type=content_types)
    def request(method, query, body, content_type):
        headers = {"content-type": content_type} if content_type else {}
        url = PATH + ("?" + query if query else "")
        response = client.request(method, url, content=body if method != "GET" else None, headers=headers)
        assert response.status_code in REFUSALS | {204}, (method, query, body[:200], response.text[:200])
        if response.status_code != 204 and method != "HEAD":
            assert set(response.json()) == {"error", "detail"}
        answered.append(response.status_code)

    request()
    assert len(answered) == 10_000
    queue = Queue(Settings(redis_url=redis_url).queue, connection=r, serializer=JSONSerializer)
    stored = [record for job in queue.get_jobs() for record in job.args[0]]
    assert len(stored) == answered.count(204), "every acknowledged receipt is stored, and nothing else"
    assert all(contract_valid(record) for record in stored)
    assert answered.count(204) > 100 and len(set(answered)) >= 5, "the generator reached every kind of answer"


MESSAGE_PATH = "/webhooks/message-status"
nested = st.one_of(scalars, st.dictionaries(st.sampled_from(["title", "price", "currency", "network_code",
                                                             "count_total", "detail", "x"]), values, max_size=3))
# Close to a Messages API status callback: what makes it one mostly well-formed, the rest of any type.
near_statuses = st.fixed_dictionaries(
    {"message_uuid": st.one_of(st.uuids().map(str), st.text(min_size=1, max_size=40)),
     "timestamp": st.sampled_from(["2023-05-01T14:00:00Z", "2023-05-01T14:00:00.5+02:00", "2023-05-01", "nope", ""]),
     "status": st.sampled_from(["submitted", "delivered", "read", "rejected", "undeliverable", "x", ""])},
    optional={name: nested for name in ("to", "from", "channel", "client_ref", "error", "usage", "destination",
                                        "sms", "workflow")})


def test_three_thousand_hostile_status_callbacks(client, r, redis_url):
    answered: list[int] = []

    @settings(max_examples=3000, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(method=st.one_of(st.just("POST"), methods),
           body=st.one_of(near_statuses.map(lambda d: json.dumps(d).encode()), bodies),
           content_type=st.one_of(st.just("application/json"), content_types))
    def request(method, body, content_type):
        headers = {"content-type": content_type} if content_type else {}
        response = client.request(method, MESSAGE_PATH, content=body if method != "GET" else None, headers=headers)
        assert response.status_code in REFUSALS | {204}, (method, body[:200], response.text[:200])
        answered.append(response.status_code)

    request()
    queue = Queue(Settings(redis_url=redis_url).queue, connection=r, serializer=JSONSerializer)
    stored = [record for job in queue.get_jobs() for record in job.args[0]]
    assert len(stored) == answered.count(204), "every acknowledged status is stored, and nothing else"
    assert all(contract_valid(record) and record["adapter"] == "messages" for record in stored)
    assert answered.count(204) > 100 and len(set(answered)) >= 4
