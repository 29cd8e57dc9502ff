"""Upgrading in place: what dlrq 0.1 left in Redis is read, and updated, by this version with no step.

`fixtures/store-v02.json` is what dlrq 0.1 stored for a small scenario (made by
`fixtures/make_store_v02.py`), with that version's own answers to GET /messages/{id}: part records
as JSON, messages as hashes, an owner key per part, deadlines in one sorted set, the record's
batches as plain lines.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
import redis

from dlrq.core import keys, record
from dlrq.core.calls import run
from dlrq.core.records import load_message, load_part
from dlrq.core.settings import Settings
from dlrq.core.store import read_messages
from tests.support.apps import ingest_and_api
from tests.support.queues import drain, pending_deadlines, queue_of
from workers.sweep import sweep

pytestmark = pytest.mark.integration
FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "store-v02.json").read_text())
TOKEN = "upgrade-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PATH = "/webhooks/delivery-receipt"
NUMBER = "447700900123"
M1, M1_B, M2, M2_D, M3, UNREGISTERED = ("0A000000FIX0001A", "0A000000FIX0001B", "0A000000FIX0002C",
                                        "0A000000FIX0002D", "0A000000FIX0003E", "0A000000FIX0004U")


def restore(r: redis.Redis) -> None:
    """Every key as dlrq 0.1 left it."""
    for item in FIXTURE["keys"]:
        key, value = item["key"], item["value"]
        if item["type"] == "string":
            r.set(key, base64.b64decode(value))
        elif item["type"] == "hash":
            r.hset(key, mapping={f: base64.b64decode(v) for f, v in value.items()})
        elif item["type"] == "zset":
            r.zadd(key, {base64.b64decode(m): score for m, score in value})
        elif item["type"] == "list":
            r.rpush(key, *(base64.b64decode(v) for v in value))
        elif item["type"] == "set":
            r.sadd(key, *(base64.b64decode(v) for v in value))
        elif item["type"] == "stream":
            for entry_id, fields in value:
                r.xadd(key, {f: base64.b64decode(v) for f, v in fields.items()}, id=entry_id)
        if item["ttl"] > 0:
            r.expire(key, item["ttl"])


def receipt(message_id: str, status: str, err: str, scts: str, at: str, ref: str) -> dict[str, str]:
    return {"messageId": message_id, "msisdn": NUMBER, "to": "ACME", "network-code": "23410", "price": "0.03330000",
            "status": status, "err-code": err, "scts": scts, "message-timestamp": at, "api-key": "abcd1234",
            "client-ref": ref}


@pytest.fixture
def upgraded(redis_url: str, r: redis.Redis) -> Settings:
    restore(r)
    assert r.type(keys.part(M1_B)) == b"string" and r.get(keys.part(M1_B)).startswith(b"{")
    assert r.type(keys.message(M2)) == b"hash" and r.exists(keys.owner(M1_B)) and r.zcard(keys.DEADLINES) == 3
    return Settings(redis_url=redis_url, api_token=TOKEN, receipt_timeout=60)


def test_what_dlrq_01_stored_reads_as_it_did(upgraded):
    with ingest_and_api(upgraded) as (_, api):
        for message_id, expected in FIXTURE["views"].items():
            assert api.get(f"/messages/{message_id}", headers=AUTH).json() == expected, message_id


def test_what_dlrq_01_stored_is_updated_correctly_and_rewritten_compactly(upgraded, r):
    r.delete(keys.DEADLINES)  # long past: they are the next test's
    resends = int(r.hget(keys.COUNTERS, keys.COUNT_RESEND))
    with ingest_and_api(upgraded) as (ingest, api):
        sent = [
            receipt(M1_B, "delivered", "0", "2612041202", "2026-12-04 12:00:20", "fixture-m1"),
            # Told again: a resend of what dlrq 0.1 applied is still a resend.
            receipt(M1, "delivered", "0", "2612041201", "2026-12-04 12:00:09", "fixture-m1"),
            receipt(UNREGISTERED, "delivered", "0", "2612041205", "2026-12-04 12:00:21", "fixture-u"),
            receipt(M2_D, "failed", "6", "2612041206", "2026-12-04 12:00:22", "fixture-m2"),
        ]
        assert [ingest.post(PATH, json=params).status_code for params in sent] == [204] * 4
        drain(upgraded)
        # The send of attempt 2, told again, is attempt 2; a part of message 1 cannot join another one.
        again = {"message-count": "1", "retry_of": M2, "messages": [
            {"to": NUMBER, "message-id": M2_D, "status": "0", "message-price": "0.03330000", "network": "23410"}]}
        assert ingest.post("/messages", json=again, headers=AUTH).status_code == 200
        thief = {"message-count": "2", "messages": [{"to": NUMBER, "message-id": i, "status": "0"}
                                                    for i in ("NEWFIRST", M1_B)]}
        answer = ingest.post("/messages", json=thief, headers=AUTH)
        assert answer.status_code == 409 and M1 in answer.json()["detail"]
        views = {i: api.get(f"/messages/{i}", headers=AUTH).json() for i in (M1, M2, UNREGISTERED)}

    assert views[M1]["status"] == "delivered" and [p["status"] for p in views[M1]["parts"]] == ["delivered"] * 2
    assert [h["status"] for h in views[M1]["parts"][0]["history"]] == ["accepted", "delivered"]
    assert int(r.hget(keys.COUNTERS, keys.COUNT_RESEND)) == resends + 1
    assert views[UNREGISTERED]["status"] == "delivered"
    assert [h["status"] for h in views[UNREGISTERED]["parts"][0]["history"]] == ["accepted", "delivered"]
    assert views[M2]["status"] == "failed" and views[M2]["attempts"] == 2
    assert [a["id"] for a in views[M2]["alerts"]] == [f"permanent_failure:{M2}:1", f"permanent_failure:{M2}:2"]

    # What changed is kept in this version's layout (what did not is left as it was).
    for part_id in (M1_B, UNREGISTERED, M2_D):
        stored = r.get(keys.part(part_id))
        assert not stored.startswith(b"{") and load_part(stored)["history"], part_id
    assert all(r.get(keys.part(i)).startswith(b"{") for i in (M1, M3)), "a resend changes nothing"
    assert r.type(keys.message(M2)) == b"string" and r.ttl(keys.message(M2)) > 0
    [stored] = run(r, read_messages([M2]))
    assert len(load_message(M2, stored).attempts) == 2


def test_deadlines_dlrq_01_registered_are_judged(upgraded, r):
    """All three passed long ago: the parts of the latest attempts still without a final receipt are
    missing (message 1's second part, message 2's retry, message 3); message 2's first attempt, superseded
    by its retry, is not judged."""
    raised = sweep(r, queue_of(r, upgraded), upgraded, time.time())
    assert sorted((e.kind, e.data["message"], e.data["part"]) for e in raised) == [
        ("receipt_missing", M1, M1_B), ("receipt_missing", M2, M2_D), ("receipt_missing", M3, M3)]
    assert pending_deadlines(r) == 0 and not r.exists(keys.DEADLINES)
    assert sweep(r, queue_of(r, upgraded), upgraded, time.time()) == []


def test_the_record_dlrq_01_kept_exports_with_what_came_after(upgraded, r):
    old = sum(len(record.lines(fields)) for _, fields in r.xrange(keys.RECORD))
    assert old == 6
    with ingest_and_api(upgraded) as (ingest, _):
        later = receipt(M1_B, "delivered", "0", "2612041202", "2026-12-04 12:00:20", "fixture-m1")
        assert ingest.post(PATH, json=later).status_code == 204
    lines = [json.loads(line) for _, fields in r.xrange(keys.RECORD) for line in record.lines(fields)]
    assert len(lines) == old + 1 and lines[-1]["params"] == later
    assert [line["params"]["messageId"] for line in lines[:2]] == [M1, M1]
