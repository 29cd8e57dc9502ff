"""Raise events: each once, with one RQ job per (event, handler), in one atomic call.

The event's guard key, its alert in the message and its handler jobs are written
together by raise_event.lua, so an event is never recorded without its handler
calls, nor called twice: the jobs' ids are derived from the event and handler.
Handler jobs carry an RQ Retry; the ones that run out of retries wait in RQ's
failed registry (`dlrq failed list|requeue`).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import redis
from rq import Retry

from dlrq.core import keys, records
from dlrq.core.calls import Script, run
from dlrq.core.events import FAILURE_RATE, RETRY, Event
from dlrq.core.jobs import FAILURE_TTL, Recorder, flatten, handler_job_id
from dlrq.core.receipt import utc_now_iso
from dlrq.core.settings import Settings

RAISE_EVENT = Script.load(__package__, "raise_event", libraries=("commands", "records"))
LAYOUT = records.lua_config()
# Seconds a handler job has, after its call, to mark the call made: a marker written late is better
# than a job cut off by its timeout after a successful call, and called again.
MARK_WITHIN = 30
log = logging.getLogger("dlrq.events")
# A finished call leaves no RQ job or result behind: its marker (keys.delivered) says when it was made.
RESULT_TTL = 0


class Dispatcher:
    def __init__(self, connection: redis.Redis, settings: Settings) -> None:
        self._connection = connection
        self._settings = settings
        self._recorder = Recorder(settings.handler_queue)

    def handlers(self, event: Event) -> tuple[str, ...]:
        return self._settings.retry_handlers if event.kind == RETRY else self._settings.alert_handlers

    def raise_event(self, event: Event, message_id: str | None = None) -> bool:
        """Return True if the event was new (its handlers will be called), False if raised before."""
        return self.raise_events([(event, message_id)]) == 1

    def raise_events(self, raised: list[tuple[Event, str | None]]) -> int:
        """Raise each event (with the message it is recorded in, if any) in one round trip; return how
        many were new."""
        return sum(self.raise_each(raised))

    def raise_each(self, raised: list[tuple[Event, str | None]]) -> list[bool]:
        """raise_events, saying of each event whether it was new."""
        if not self._recorder.knows_server:
            self._recorder.set_server_version(str(self._connection.info("server")["redis_version"]))
        new = run(self._connection, RAISE_EVENT.each([self._call(event, message_id) for event, message_id in raised]))
        for (event, _), fresh in zip(raised, new):
            if fresh:
                log.debug("event %s raised for %s", event.id, ", ".join(self.handlers(event)) or "no handler")
        return [bool(fresh) for fresh in new]

    def _call(self, event: Event, message_id: str | None) -> tuple[list[str], list[object]]:
        """raise_event.lua's keys and arguments: the guard, the alert, and RQ's commands for the handler jobs."""
        at = datetime.now(timezone.utc) + timedelta(seconds=event.delay) if event.delay else None
        payload = {**event.to_dict(), "raised_at": utc_now_iso()}
        commands = []
        intervals = self._settings.handler_retry_intervals
        for handler in self.handlers(event):
            job = self._recorder.queue.create_job(
                keys.DELIVER_JOB,
                args=(payload, handler),
                job_id=handler_job_id(event.id, handler),
                # The call, then the time to mark it made (through a failover, if need be).
                timeout=self._settings.handler_timeout + MARK_WITHIN,
                result_ttl=RESULT_TTL,
                failure_ttl=FAILURE_TTL,
                description=f"{event.kind} {event.id} to {handler}",
                retry=Retry(max=len(intervals), interval=intervals),
            )
            commands += self._recorder.enqueue(job, at)
        commands.append(("HINCRBY", keys.COUNTERS, keys.count_events(event.kind), 1))
        if event.kind == FAILURE_RATE:
            guard = keys.cooldown(FAILURE_RATE, payload["network_code"])
            ttl = self._settings.failure_rate_cooldown
        else:
            guard, ttl = keys.event(event.id), self._settings.message_ttl
        event_keys = [guard, keys.ALERTS] + ([keys.message(message_id)] if message_id else [])
        return event_keys, [json.dumps(payload), ttl, LAYOUT, "1" if event.is_alert else "0", keys.ALERTS_KEPT,
                            event.id, *flatten(commands)]
