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

from dlrq.core import keys
from dlrq.core.calls import run
from dlrq.core.correlate import silent_parts
from dlrq.core.events import Event, receipt_missing
from dlrq.core.receipt import iso_from_epoch
from dlrq.core.settings import Settings
from dlrq.core.store import read_message, read_parts

from .dispatch import Dispatcher
from .react import message_reactions

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
    """Evaluate newly registered messages, and judge every deadline that has passed; return the events raised."""
    pending = unapplied_since(connection, queue)
    judged_until = now if pending is None else min(now, pending)
    dispatcher = Dispatcher(connection, settings)
    raised: list[Event] = []
    for due, judge in ((keys.EVALUATE, evaluate), (keys.DEADLINES, missing_receipts)):
        for member in connection.zrangebyscore(due, "-inf", judged_until, start=0, num=SWEEP_LIMIT):
            logical_id = _text(member)
            raised += [event for event in judge(connection, settings, logical_id)
                       if dispatcher.raise_event(event, logical_id)]
            connection.zrem(due, member)
    for event in raised:
        if event.kind == "receipt_missing":
            log.warning("receipt missing: part %s of message %s", event.data["part"], event.data["message"])
    return raised


def evaluate(connection: redis.Redis, settings: Settings, logical_id: str) -> list[Event]:
    return [event for event, _ in message_reactions(connection, settings, {logical_id: logical_id})]


def missing_receipts(connection: redis.Redis, settings: Settings, logical_id: str) -> list[Event]:
    """The latest attempt's submitted parts with no final receipt (a later attempt moved the deadline)."""
    message = run(connection, read_message(logical_id))
    if message is None:
        return []
    attempt = message.attempts[-1]
    docs = run(connection, read_parts(message.submitted_parts))
    deadline = iso_from_epoch(attempt["deadline"])
    return [receipt_missing(logical_id, len(message.attempts), part, deadline)
            for part in silent_parts(attempt, docs)]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
