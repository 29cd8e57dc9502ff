"""Deadlines: receipt_missing for registered parts whose final receipt never came, and the
first look at a newly registered message (its receipts may have failed it before it was).

The deadlines live in Redis sorted sets, so no worker restart loses one. One worker at a time
sweeps them (a lock), in a thread of its own every SWEEP_EVERY seconds, SWEEP_BATCH messages a
round trip or three, until nothing more is due: the sweep keeps up with registrations however
many arrive. Events are named by their cause, so a message judged twice (its sweeper died
before taking it off the set) raises nothing twice; one message that cannot be judged is
logged and taken off, never a reason to leave the others waiting.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any

import redis
from rq import Queue
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from dlrq.core import keys
from dlrq.core.calls import Script, run
from dlrq.core.correlate import silent_parts
from dlrq.core.events import Event, receipt_missing
from dlrq.core.receipt import iso_from_epoch
from dlrq.core.settings import Settings
from dlrq.core.store import UnreadableMessage, decode_message, read_parts

from .react import dispatcher_for, message_reactions
from .shed import shed_record

log = logging.getLogger("dlrq.sweep")
SWEEP_BATCH = 500
SWEEP_EVERY = 1.0
# The sweeping worker holds the lock this long at a time, and takes it again for each batch: a
# sweeper that dies leaves the sweep to the others within this many seconds.
LOCK_TTL = 10
RELEASE = Script.load(__package__, "release_lock")
TAKE = Script.load(__package__, "take_due")


def raw_score(score: bytes) -> bytes:
    """A score as Redis wrote it, so that take_due.lua compares it with what Redis holds, exactly."""
    return score


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


def sweep(connection: redis.Redis, queue: Queue, settings: Settings, now: float, holder: str = "") -> list[Event]:
    """Evaluate newly registered messages, and judge every deadline that has passed; return the events
    raised. Nothing, if another worker is sweeping (`holder` names this one)."""
    holder = holder or f"sweep-{id(connection)}-{threading.get_ident()}"
    if not connection.set(keys.SWEEPING, holder, nx=True, ex=LOCK_TTL):
        return []
    try:
        pending = unapplied_since(connection, queue)
        judged_until = now if pending is None else min(now, pending)
        raised: list[Event] = []
        for due, judge in ((keys.EVALUATE, evaluate), (keys.DEADLINES, missing_receipts)):
            while True:
                members = connection.zrangebyscore(due, "-inf", judged_until, start=0, num=SWEEP_BATCH,
                                                   withscores=True, score_cast_func=raw_score)
                if not members:
                    break
                found = judge(connection, settings, [_text(m) for m, _ in members])
                new = dispatcher_for(connection, settings).raise_each(found) if found else []
                raised += [event for (event, _), fresh in zip(found, new) if fresh]
                run(connection, TAKE(keys=[due], args=[x for member in members for x in member]))
                connection.expire(keys.SWEEPING, LOCK_TTL)
    finally:
        run(connection, RELEASE(keys=[keys.SWEEPING], args=[holder]))
    for event in raised:
        if event.kind == "receipt_missing":
            log.warning("receipt missing: part %s of message %s", event.data["part"], event.data["message"])
    return raised


def evaluate(connection: redis.Redis, settings: Settings, ids: list[str]) -> list[tuple[Event, str | None]]:
    """The events newly registered messages call for (their receipts may have come first)."""
    return message_reactions(connection, settings, {i: i for i in ids})


def missing_receipts(connection: redis.Redis, settings: Settings, ids: list[str]
                     ) -> list[tuple[Event, str | None]]:
    """For each message, the latest attempt's submitted parts with no final receipt (a later attempt
    moved the deadline): the messages in one round trip, their parts in another."""
    with connection.pipeline(transaction=False) as pipe:
        for logical_id in ids:
            pipe.hgetall(keys.message(logical_id))
        found = pipe.execute()
    messages: dict[str, Any] = {}
    for logical_id, fields in zip(ids, found):
        if not fields:
            continue
        try:
            messages[logical_id] = decode_message(fields)
        except UnreadableMessage as exc:
            log.error("message %s cannot be judged for missing receipts, and is left: %s", logical_id, exc)
    docs = run(connection, read_parts([p for m in messages.values() for p in m.submitted_parts]))
    events = []
    for logical_id, message in messages.items():
        try:
            attempt = message.attempts[-1]
            deadline = iso_from_epoch(attempt["deadline"])
            events += [(receipt_missing(logical_id, len(message.attempts), part, deadline), logical_id)
                       for part in silent_parts(attempt, docs)]
        except Exception:  # this message's record alone
            log.exception("message %s cannot be judged for missing receipts, and is left", logical_id)
    return events


class Sweeper:
    """`sweep` every SWEEP_EVERY seconds in a thread, whatever the worker is running meanwhile; and,
    over the memory high-water mark, shed what can be spared first (workers.shed)."""

    def __init__(self, connection: redis.Redis, queue: Queue, settings: Settings, name: str) -> None:
        self._connection, self._queue, self._settings, self._name = connection, queue, settings, name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dlrq-sweep", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(SWEEP_EVERY):
            try:
                shed_record(self._connection, self._settings.memory_high_water)
                sweep(self._connection, self._queue, self._settings, time.time(), self._name)
            except redis.RedisError as exc:  # the worker itself says when Redis fails, and waits
                log.debug("sweep skipped: %s", exc)
            except Exception:
                log.exception("sweeping the deadlines failed; sweeping again in %s s", SWEEP_EVERY)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
