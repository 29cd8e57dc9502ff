"""Parts of one message correlated in a real server: every arrival order, registration anywhere."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
import redis
import redis.asyncio as aioredis

from dlrq.core import keys
from dlrq.core.calls import arun, run
from dlrq.core.receipt import Receipt, iso_from_epoch
from dlrq.core.registration import parse_send
from dlrq.core.settings import Settings
from dlrq.core.store import Conflict, UnknownMessage, find_message, register
from ingest.enqueue import BatchEnqueuer
from tests.support.queues import drain, pending_deadlines, queue_of
from tests.support.receipts import receipt
from tests.support.sends import send
from workers.batch import apply
from workers.sweep import sweep

pytestmark = pytest.mark.integration
SETTINGS = Settings(receipt_timeout=3600)
SHORT_DEADLINE = Settings(receipt_timeout=60)


def play(redis_url: str, events: list[tuple[str, object]]) -> dict:
    """Register sends and apply receipts in the given order; return each message's view."""

    async def run() -> dict:
        client = aioredis.from_url(redis_url)
        sync = redis.Redis.from_url(redis_url)
        try:
            for kind, item in events:
                if kind == "register":
                    await arun(client, register(parse_send(item), SETTINGS))
                else:
                    apply(sync, [Receipt(item, "2020-01-01T14:00:00.000Z")], SETTINGS)
            ids = {item["messageId"] for kind, item in events if kind == "receipt"}
            return {i: await arun(client, find_message(i)) for i in sorted(ids)}
        finally:
            await client.aclose()
            sync.close()

    return asyncio.run(run())


def orders(receipts: list[dict], registration: dict):
    """Every order of the receipts, with the registration before, between and after them."""
    for order in itertools.permutations(receipts):
        for at in range(len(receipts) + 1):
            yield [("receipt", r) for r in order[:at]] + [("register", registration)] + [
                ("receipt", r) for r in order[at:]
            ]


def scenarios(receipts: list[dict], registration: dict):
    """Distinct event sequences only (a resend makes some permutations equal)."""
    seen = set()
    for events in orders(receipts, registration):
        key = tuple((k, tuple(sorted(i.items())) if k == "receipt" else "reg") for k, i in events)
        if key not in seen:
            seen.add(key)
            yield events


def renamed(events, n):
    """The same scenario with its own ids, so that scenarios share one database."""
    out = []
    for kind, item in events:
        if kind == "receipt":
            out.append((kind, {**item, "messageId": f"{n}-{item['messageId']}"}))
        else:
            out.append((kind, {**item, "messages": [
                {**m, "message-id": f"{n}-{m['message-id']}"} for m in item["messages"]]}))
    return out


def test_two_parts_any_order_any_registration_point(redis_url):
    receipts = [
        receipt("A", "accepted", 1),
        receipt("A", "delivered", 5),
        receipt("B", "delivered", 6),
        receipt("B", "delivered", 6),  # a resend
    ]
    events = [renamed(e, n) for n, e in enumerate(scenarios(receipts, send(["A", "B"])))]
    assert len(events) == 60
    for n, scenario in enumerate(events):
        views = play(redis_url, scenario)
        a, b = views[f"{n}-A"], views[f"{n}-B"]
        assert a == b, "either part finds the same message"
        assert a["id"] == f"{n}-A" and a["registered"] is True
        assert a["status"] == "delivered" and a["parts_expected"] == 2
        assert [(p["message_id"], p["index"], p["status"]) for p in a["parts"]] == [
            (f"{n}-A", 0, "delivered"), (f"{n}-B", 1, "delivered")]
        assert [h["status"] for h in a["parts"][0]["history"]] == ["accepted", "delivered"]
        assert len(a["parts"][1]["history"]) == 1
        assert a["price"] == "0.06660000" and a["client_ref"] == "ref-1" and a["to"] == "447700900000"


def test_three_parts_one_failing_any_order_any_registration_point(redis_url):
    receipts = [
        receipt("A", "delivered", 5),
        receipt("B", "buffered", 2),
        receipt("B", "failed", 7, "3"),
        receipt("C", "delivered", 6),
        receipt("A", "delivered", 5),  # a resend
    ]
    events = [renamed(e, n) for n, e in enumerate(scenarios(receipts, send(["A", "B", "C"])))]
    assert len(events) == 360
    for n, scenario in enumerate(events):
        view = play(redis_url, scenario)[f"{n}-C"]
        assert view["status"] == "failed" and view["parts_expected"] == 3
        assert [p["status"] for p in view["parts"]] == ["delivered", "failed", "delivered"]
        assert [p["index"] for p in view["parts"]] == [0, 1, 2]
        assert view["parts"][1]["err_code"] == "3"


def test_a_late_accepted_never_undoes_delivered_and_missing_parts_keep_it_pending(redis_url):
    views = play(redis_url, [
        ("register", send(["A", "B", "C"])),
        ("receipt", receipt("A", "delivered", 5)),
        ("receipt", receipt("A", "accepted", 1)),
        ("receipt", receipt("B", "delivered", 5)),
    ])
    assert views["A"]["status"] == "pending"
    assert [p["status"] for p in views["A"]["parts"]] == ["delivered", "delivered", None]
    views = play(redis_url, [("receipt", receipt("C", "unknown", 9, "1"))])
    assert views["C"]["status"] == "unknown", "all parts final, not all delivered"


def test_a_part_refused_at_send_time_fails_the_message(redis_url):
    views = play(redis_url, [("register", send(["A", "B"], ["0", "1"])), ("receipt", receipt("A", "delivered", 5))])
    assert views["A"]["status"] == "failed"
    assert views["A"]["parts"][1] == {**views["A"]["parts"][1], "status": "failed", "send_status": "1"}


def test_registering_twice_is_idempotent(redis_url):
    async def run():
        client = aioredis.from_url(redis_url)
        first = await arun(client, register(parse_send(send(["A", "B"])), SETTINGS))
        again = await arun(client, register(parse_send(send(["A", "B"])), SETTINGS))
        await client.aclose()
        return first, again

    first, again = asyncio.run(run())
    assert (first.created, again.created) == (True, False)
    assert first.answer() == again.answer() == {"id": "A", "parts": ["A", "B"]}


def test_retry_of_adds_an_attempt_and_the_latest_decides(redis_url):
    async def run():
        client = aioredis.from_url(redis_url)
        await arun(client, register(parse_send(send(["A", "B"])), SETTINGS))
        apply(redis.Redis.from_url(redis_url), [Receipt(receipt("A", "failed", 5, "2"), "t")], SETTINGS)
        retried = await arun(client, register(parse_send(send(["C", "D"], retry_of="A")), SETTINGS))
        again = await arun(client, register(parse_send(send(["C", "D"], retry_of="A")), SETTINGS))
        apply(redis.Redis.from_url(redis_url), [Receipt(receipt(i, "delivered", 9), "t") for i in "CD"], SETTINGS)
        views = [await arun(client, find_message(i)) for i in "ABCD"]
        with pytest.raises(UnknownMessage):
            await arun(client, register(parse_send(send(["E"], retry_of="NOPE")), SETTINGS))
        with pytest.raises(Conflict):
            await arun(client, register(parse_send(send(["F", "C"])), SETTINGS))
        await client.aclose()
        return retried, again, views

    retried, again, views = asyncio.run(run())
    assert retried.answer() == {"id": "A", "parts": ["C", "D"]} and retried.created and not again.created
    assert all(v == views[0] for v in views)
    assert views[0]["attempts"] == 2 and views[0]["status"] == "delivered"


def test_receipt_missing_is_raised_once_for_a_silent_part_only(redis_url, r, settings):
    async def reg():
        client = aioredis.from_url(redis_url)
        await arun(client, register(parse_send(send(["A", "B"])), SHORT_DEADLINE))
        await client.aclose()

    asyncio.run(reg())
    apply(r, [Receipt(receipt("A", "delivered", 5), "t")], SETTINGS)
    queue = queue_of(r, settings)
    assert sweep(r, queue, settings, time.time()) == [], "not due yet"
    raised = sweep(r, queue, settings, time.time() + 61)
    assert [(e.kind, e.data["part"], e.data["message"]) for e in raised] == [("receipt_missing", "B", "A")]
    assert sweep(r, queue, settings, time.time() + 120) == []
    apply(r, [Receipt(receipt("B", "delivered", 70), "t")], SETTINGS)
    alerts = asyncio.run(_find(redis_url, "B"))["alerts"]
    assert [a["id"] for a in alerts] == ["receipt_missing:B"], "a late receipt does not take the alert back"
    assert pending_deadlines(r) == 0


def test_a_receipt_acknowledged_in_time_but_still_queued_is_in_time(redis_url, r, settings):
    async def reg_and_enqueue():
        client = aioredis.from_url(redis_url)
        await arun(client, register(parse_send(send(["A", "B"])), SHORT_DEADLINE))
        enqueue = BatchEnqueuer(client, settings.queue, settings.job_timeout)
        await enqueue([Receipt(receipt(i, "delivered", 5), "t") for i in "AB"])
        await client.aclose()

    asyncio.run(reg_and_enqueue())
    queue = queue_of(r, settings)
    assert sweep(r, queue, settings, time.time() + 61) == [], "the queued batch may hold the final receipts"
    assert pending_deadlines(r) == 1
    drain(settings)
    assert sweep(r, queue, settings, time.time() + 61) == []
    assert asyncio.run(_find(redis_url, "A"))["alerts"] == []
    assert pending_deadlines(r) == 0


async def _find(redis_url, message_id):
    client = aioredis.from_url(redis_url)
    try:
        return await arun(client, find_message(message_id))
    finally:
        await client.aclose()


def test_a_client_refs_index_forgets_messages_and_parts_that_are_gone(redis_url):
    """The console's search by client-ref lists no message or part that has expired."""
    r = redis.Redis.from_url(redis_url)
    settings = Settings(redis_url=redis_url)
    now = time.time()
    gone = now - settings.message_ttl - 60
    run(r, register(parse_send(send(["GONE1"])), settings, now=gone))
    apply(r, [Receipt(receipt("LONE1", "delivered", 5, **{"client-ref": "ref-1"}), iso_from_epoch(gone))], settings)
    run(r, register(parse_send(send(["KEPT1"])), settings, now=now))
    apply(r, [Receipt(receipt("LONE2", "delivered", 5, **{"client-ref": "ref-1"}), iso_from_epoch(now))], settings)
    assert {keys.indexed_id(m) for m in r.zrange(keys.by_ref("ref-1"), 0, -1)} == {"KEPT1", "LONE2"}
