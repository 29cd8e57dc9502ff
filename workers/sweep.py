"""Deadlines: receipt_missing for registered parts whose final receipt never came, and the
first look at a newly registered message (its receipts may have failed it before it was).

The deadlines live in Redis (keys.DUE: a list of messages per minute of deadlines, in the order
registered; keys.EVALUATE: a sorted set), so no worker restart loses one. One worker at a time
sweeps them (a lock), in a thread of its own every SWEEP_EVERY seconds, SWEEP_BATCH messages a
round trip or three, until nothing more is due: the sweep keeps up with registrations however
many arrive. A list is judged from its head, each message once its latest deadline has passed
(one registered again since, a retry, is judged in its later list). Events are named by their
cause, so a message judged twice (its sweeper died before taking it off) raises nothing twice;
one message that cannot be judged is logged and taken off, never a reason to leave the others
waiting.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

import redis
from rq import Queue
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from dlrq.core import keys
from dlrq.core.calls import Script, run
from dlrq.core.correlate import silent_parts
from dlrq.core.events import Event, receipt_missing
from dlrq.core.receipt import iso_from_epoch
from dlrq.core.records import Message, UnreadableMessage, load_message
from dlrq.core.settings import Settings
from dlrq.core.store import read_messages, read_parts

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
TAKE_JUDGED = Script.load(__package__, "take_judged")
MOVE_DEADLINES = Script.load(__package__, "move_deadlines")


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

        def raise_found(found: list[tuple[Event, str | None]]) -> None:
            new = dispatcher_for(connection, settings).raise_each(found) if found else []
            raised.extend(event for (event, _), fresh in zip(found, new) if fresh)
            connection.expire(keys.SWEEPING, LOCK_TTL)

        while members := connection.zrangebyscore(keys.EVALUATE, "-inf", judged_until, start=0, num=SWEEP_BATCH,
                                                  withscores=True, score_cast_func=raw_score):
            raise_found(evaluate(connection, settings, [_text(m) for m, _ in members]))
            run(connection, TAKE(keys=[keys.EVALUATE], args=[x for member in members for x in member]))
        move_deadlines(connection)
        for bucket in connection.zrangebyscore(keys.DUE, "-inf", judged_until):
            while True:
                ids = [_text(i) for i in connection.lrange(keys.due(_text(bucket)), 0, SWEEP_BATCH - 1)]
                taken, found = judge_due(connection, settings, ids, int(bucket), judged_until)
                raise_found(found)
                left = run(connection, TAKE_JUDGED(keys=[keys.due(_text(bucket)), keys.DUE], args=[taken, bucket]))
                if taken < len(ids) or not left:
                    break
    finally:
        run(connection, RELEASE(keys=[keys.SWEEPING], args=[holder]))
    for event in raised:
        if event.kind == "receipt_missing":
            log.warning("receipt missing: part %s of message %s", event.data["part"], event.data["message"])
    return raised


def evaluate(connection: redis.Redis, settings: Settings, ids: list[str]) -> list[tuple[Event, str | None]]:
    """The events newly registered messages call for (their receipts may have come first)."""
    return message_reactions(connection, settings, {i: i for i in ids})


def judge_due(connection: redis.Redis, settings: Settings, ids: list[str], bucket: int, judged_until: float
              ) -> tuple[int, list[tuple[Event, str | None]]]:
    """The head of a deadline list judged: how many of `ids` are done with (due and judged, registered
    again into a later list, or gone), and the events they call for. The first message not yet due
    stops it: the rest of its list, registered after it, is due after it too."""
    messages: dict[str, Message] = {}
    taken = 0
    for logical_id, stored in zip(ids, run(connection, read_messages(ids))):
        try:
            message = load_message(logical_id, stored)
            deadline = message.attempts[-1]["deadline"] if message else None
        except (UnreadableMessage, LookupError, TypeError) as exc:
            log.error("message %s cannot be judged for missing receipts, and is left: %s", logical_id, exc)
            message, deadline = None, None
        if message is not None and keys.due_bucket(deadline) == bucket:
            if deadline > judged_until:
                break
            messages[logical_id] = message
        taken += 1
    return taken, missing_receipts(connection, messages)


def missing_receipts(connection: redis.Redis, messages: dict[str, Message]) -> list[tuple[Event, str | None]]:
    """For each message, the latest attempt's submitted parts with no final receipt: in one round trip."""
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


def move_deadlines(connection: redis.Redis) -> int:
    """Deadlines dlrq 0.1-0.2 registered (one sorted set), moved into the lists; once, after an upgrade."""
    moved = 0
    while members := connection.zrange(keys.DEADLINES, 0, SWEEP_BATCH - 1, withscores=True,
                                       score_cast_func=raw_score):
        buckets = [keys.due_bucket(float(score)) for _, score in members]
        moved += run(connection, MOVE_DEADLINES(
            keys=[keys.DEADLINES, keys.DUE, *(keys.due(b) for b in buckets)],
            args=[x for (member, score), b in zip(members, buckets) for x in (member, score, b, b * keys.DUE_BUCKET)]))
    return moved


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
