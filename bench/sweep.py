"""The sweep against a burst of registrations: how long after the last one every registration has
been evaluated by one worker (half of them of messages whose failed receipt came first)."""

from __future__ import annotations

import time
from typing import Any

import redis

from dlrq.core import keys
from dlrq.core.calls import run
from dlrq.core.receipt import Receipt, utc_now_iso
from dlrq.core.registration import parse_send
from dlrq.core.settings import Settings
from dlrq.core.store import register
from workers.batch import apply

from .harness import SERVER_CORE, process, python

CHUNK = 1000
GIVE_UP = 600


def sweep_lag(url: str, messages: int) -> dict[str, Any]:
    """In a spare database: failed receipts for every other message, then one worker, then `messages`
    registrations as fast as one client makes them; seconds from the last until none is left to evaluate."""
    db_url = url.rsplit("/", 1)[0] + "/2"
    client = redis.Redis.from_url(db_url)
    client.flushdb()
    settings = Settings(redis_url=db_url)
    for first in range(0, messages, 2 * CHUNK):
        failed = [Receipt(_failed(f"SWEEP{i:07d}"), utc_now_iso()) for i in range(first, first + 2 * CHUNK, 2)]
        apply(client, failed, settings)
    with process([python(), "-m", "dlrq", "worker"], {"DLRQ_REDIS_URL": db_url}, SERVER_CORE):
        started = time.monotonic()
        for i in range(messages):
            run(client, register(parse_send(_send(f"SWEEP{i:07d}")), settings))
        registered = time.monotonic()
        while client.zcard(keys.EVALUATE) and time.monotonic() - registered < GIVE_UP:
            time.sleep(0.1)
        evaluated = time.monotonic()
        events = int(client.hget(keys.COUNTERS, keys.count_events("permanent_failure")) or 0)
    client.flushdb()
    return {"messages": messages, "register_seconds": registered - started,
            "evaluated_after_last_s": evaluated - registered, "events": events}


def _failed(message_id: str) -> dict[str, str]:
    return {"messageId": message_id, "status": "failed", "err-code": "6", "msisdn": "447700900000",
            "network-code": "23410", "price": "0.03330000", "scts": "2001011400",
            "message-timestamp": "2020-01-01 14:00:05"}


def _send(message_id: str) -> dict[str, Any]:
    return {"message-count": "1", "messages": [{"to": "447700900000", "message-id": message_id, "status": "0",
                                                "message-price": "0.03330000", "network": "23410"}]}
