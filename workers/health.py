"""Waiting out a Redis that cannot be used: unreachable, refusing writes, or evicting keys.

A worker never exits because of it: it says so once when the state changes, looks again
every PAUSE seconds, and resumes by itself; a stop request ends the wait at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from dlrq.core import readiness
from dlrq.core.calls import run
from dlrq.core.readiness import Problem

log = logging.getLogger("dlrq.worker")
PAUSE = 0.5


class RedisHealth:
    def __init__(self, connection: redis.Redis, stopping: Callable[[], bool], where: str) -> None:
        self._connection = connection
        self._stopping = stopping
        self._where = where
        self._said: str | None = None

    def problem(self) -> Problem | None:
        try:
            return run(self._connection, readiness.problem())
        except redis.RedisError as exc:
            return readiness.unreachable(self._where, exc)

    def wait(self, cause: BaseException | Problem | None = None) -> bool:
        """Until Redis can be used (True) or a stop is requested (False)."""
        problem = self.problem() if cause is None else self._describe(cause)
        while problem is not None:
            if self._said != problem.kind:  # once per state: the same problem seen again is not news
                log.error("%s; waiting for it (nothing acknowledged is lost meanwhile)", problem)
                self._said = problem.kind
            deadline = time.monotonic() + PAUSE
            while time.monotonic() < deadline:
                if self._stopping():
                    return False
                time.sleep(0.05)
            problem = self.problem()
        if self._said is not None:
            log.warning("Redis can be used again: resuming")
            self._said = None
        return not self._stopping()

    def _describe(self, cause: BaseException | Problem) -> Problem:
        if isinstance(cause, Problem):
            return cause
        if isinstance(cause, (redis.ConnectionError, redis.TimeoutError)):
            return readiness.unreachable(self._where, cause)
        return readiness.refuses(cause)
