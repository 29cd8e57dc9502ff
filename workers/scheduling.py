"""RQ's scheduler (due retries of batches and handler calls, delayed `retry` events), kept alive.

RQ forks its scheduler into a process of its own, which dies on the first connection error
and is started again only by the worker's maintenance (rq#2189): a Redis restart or a
failover left scheduled jobs waiting. Here it runs in a thread of the worker, started again
a second after any error, and takes over a lock whose holder has stopped beating.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

import redis
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, SCHEDULER_LOCKING_KEY_TEMPLATE, RQScheduler
from rq.utils import as_text, utcparse

from dlrq.core.calls import Script, run
from dlrq.core.connect import is_transient

RELEASE_LOCK = Script.load(__package__, "release_lock")
log = logging.getLogger("dlrq.worker")
# RQ's scheduler beats every second and holds its lock for 61 s: a scheduler silent for this long
# is dead (its worker was killed), and its lock is released rather than left to hold every
# scheduled job (batch and handler retries, retry events) for up to a minute.
SCHEDULER_DEAD_AFTER = 15
RESTART_AFTER = 1.0


class ThreadScheduler(RQScheduler):
    """RQ's scheduler in a thread: the worker's own signal handlers stay in charge."""

    def _install_signal_handlers(self) -> None:
        pass

    @property
    def should_reacquire_locks(self) -> bool:
        """Ask for a missing lock every beat, not every 10 minutes: another worker's scheduler may have died."""
        return self._queue_names != self.acquired_locks


class Scheduling:
    def __init__(self, connection: redis.Redis, queue_names: list[str], name: str) -> None:
        self.scheduler = ThreadScheduler(queue_names, connection=connection, name=name, logging_level="WARNING")
        self.scheduler._connection = connection
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dlrq-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self.scheduler._stop_requested = True
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.scheduler.work()  # returns once a stop is requested, releasing its locks
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("the scheduler failed; starting it again")
                self.scheduler._acquired_locks = set()
                self.scheduler.lock_acquisition_time = None
                self._stop.wait(RESTART_AFTER)


def release_dead_scheduler_locks(connection: redis.Redis, queue_names: list[str], now: datetime,
                                 alive: str | None = None) -> list[str]:
    """Return the queues whose scheduler lock was released; another scheduler then takes it.

    `alive` names this worker's own scheduler: it has not beaten yet when the worker starts.
    """
    released = []
    for name in queue_names:
        lock = SCHEDULER_LOCKING_KEY_TEMPLATE % name
        holder = connection.get(lock)
        if holder is None or as_text(holder) == alive:
            continue
        beat = connection.hget(SCHEDULER_KEY_TEMPLATE % as_text(holder), "last_heartbeat")
        if beat is not None and (now - utcparse(as_text(beat))).total_seconds() < SCHEDULER_DEAD_AFTER:
            continue
        if run(connection, RELEASE_LOCK(keys=[lock], args=[holder])):
            released.append(name)
    return released

