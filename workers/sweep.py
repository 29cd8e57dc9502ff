"""Deadlines: receipt_missing for registered parts whose final receipt never came, and the
first look at a newly registered message (its receipts may have failed it before it was).

The deadlines live in a Redis sorted set, so no worker restart loses one; every
worker sweeps it during RQ's maintenance. Events are named by their cause, so however
many workers find the same silent part, it is raised once.
"""

from __future__ import annotations

import logging
from datetime import datetime

import redis
from rq import Queue
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from ingest import keys
from ingest.correlate import load_part, silent_parts
from ingest.messages import decode_message
from ingest.receipt import iso_from_epoch
from ingest.settings import Settings

from .dispatch import Dispatcher
from .events import Event, receipt_missing
from .react import message_reaction

log = logging.getLogger("dlrq.sweep")
SWEEP_LIMIT = 1000


def unapplied_since(connection: redis.Redis, queue: Queue) -> float | None:
    """When the oldest batch not yet applied was created: receipts acknowledged after that
    may still be waiting in the queue, so no deadline after it can be judged yet."""
    ids = connection.lrange(queue.key, 0, 0) + connection.lrange(queue.intermediate_queue_key, 0, -1)
    for registry in (StartedJobRegistry, ScheduledJobRegistry):
        ids += registry(queue=queue).get_job_ids(cleanup=False)
    if not ids:
        return None
    with connection.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(queue.job_class.key_for(_text(job_id)), "created_at")
        created = [datetime.fromisoformat(_text(c).replace("Z", "+00:00")).timestamp() for c in pipe.execute() if c]
    return min(created, default=None)


def sweep(connection: redis.Redis, queue: Queue, settings: Settings, now: float) -> list[Event]:
    """Handle every deadline that has passed; return the events raised."""
    pending = unapplied_since(connection, queue)
    judged_until = now if pending is None else min(now, pending)
    dispatcher = Dispatcher(connection, settings)
    raised: list[Event] = []
    for member in connection.zrangebyscore(keys.DEADLINES, "-inf", judged_until, start=0, num=SWEEP_LIMIT):
        attempt_no, logical_id = keys.parse_deadline_member(_text(member))
        if attempt_no == 0:
            events = [event for event, _ in message_reaction(connection, settings, logical_id)]
        else:
            events = missing_receipts(connection, logical_id, attempt_no)
        raised += [event for event in events if dispatcher.raise_event(event, logical_id)]
        connection.zrem(keys.DEADLINES, member)
    for event in raised:
        if event.kind == "receipt_missing":
            log.warning("receipt missing: part %s of message %s", event.data["part"], event.data["message"])
    return raised


def missing_receipts(connection: redis.Redis, logical_id: str, attempt_no: int) -> list[Event]:
    fields = connection.hgetall(keys.message(logical_id))
    if not fields:
        return []
    _, attempts, _ = decode_message(fields)
    if attempt_no != len(attempts):
        return []  # a later attempt superseded it
    attempt = attempts[-1]
    part_ids = [p["message_id"] for p in attempt["parts"] if p["send_status"] == "0"]
    docs = {i: load_part(raw) for i, raw in zip(part_ids, connection.mget([keys.part(i) for i in part_ids]))}
    deadline = iso_from_epoch(attempt["deadline"])
    return [receipt_missing(logical_id, attempt_no, part, deadline) for part in silent_parts(attempt, docs)]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
