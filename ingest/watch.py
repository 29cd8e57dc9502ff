"""The ingest's eye on Redis: it must never acknowledge a receipt Redis may drop, or has no room to apply.

Every INTERVAL seconds (and at each /readyz) Redis is asked whether it takes writes, whether its
memory policy keeps every key, and how full it is. While it may evict, or its memory is over the
high-water mark (DLRQ_MEMORY_HIGH_WATER of maxmemory), the webhook and registrations answer 503
(Vonage sends the receipt again later) and /readyz is 503 with the reason; the workers meanwhile
apply what was acknowledged, with the room that was kept for them.

A change of state is logged once. A state that clears is logged as cleared only once it has
stayed clear for HOLD_DOWN seconds: a Redis at the edge of its memory, refusing one write in two,
is one error line, not hundreds of pairs.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, RedisError, TimeoutError

from dlrq.core import readiness
from dlrq.core.calls import NotReplicated, arun
from dlrq.core.readiness import Memory, Problem

log = logging.getLogger("dlrq.ingest")
INTERVAL = 1.0
HOLD_DOWN = 5.0
# The kinds of problem for which the webhook refuses receipts itself (for the others, each write fails).
REFUSING = (readiness.EVICTS, readiness.MEMORY_HIGH)


class StoreWatch:
    def __init__(self, client: aioredis.Redis, where: str, replicas: int = 0, high_water: float = 0.0) -> None:
        self._client = client
        self._where = where
        self._replicas = replicas
        self._high_water = high_water
        self.problem: Problem | None = None
        self.memory: Memory | None = None
        # The reason the webhook refuses receipts now, or None.
        self.unsafe: str | None = None
        self._said: str | None = None  # the kind of problem last logged (None: "usable" was)
        self._clear_since: float | None = None

    async def check(self) -> Problem | None:
        info: dict = {}
        try:
            problem = await arun(self._client, readiness.problem(self._replicas, info))
        except RedisError as exc:
            problem = readiness.unreachable(self._where, exc)
        if info:
            self.memory = readiness.memory_of(info)
        was_high = self.problem is not None and self.problem.kind == readiness.MEMORY_HIGH
        if problem is None and self.memory is not None:
            problem = readiness.memory_high(self.memory, self._high_water, was_high)
        self._now(problem)
        return problem

    def written(self, failure: Exception | None) -> None:
        """How the group commit's last write went: a failure is news only when it is a new kind."""
        if failure is None:
            if self.problem is not None and self.problem.kind not in REFUSING:
                self._now(None)
        elif isinstance(failure, (ConnectionError, TimeoutError, OSError, asyncio.TimeoutError)):
            self._now(readiness.unreachable(self._where, failure))
        elif isinstance(failure, NotReplicated):
            self._now(readiness.too_few_replicas(failure))
        else:
            self._now(readiness.refuses(failure))

    def headroom(self) -> dict[str, object]:
        """What /readyz says of Redis' memory, as last read."""
        return {} if self.memory is None else readiness.headroom(self.memory, self._high_water)

    def _now(self, problem: Problem | None) -> None:
        self.problem = problem
        self.unsafe = problem.detail if problem and problem.kind in REFUSING else None
        if problem is not None:
            self._clear_since = None
            if problem.kind != self._said:
                refusing = "; refusing receipts (503) until then" if problem.kind in REFUSING else \
                    "; answering 503 until it can (Vonage sends each receipt again)"
                log.error("%s%s", problem, refusing)
                self._said = problem.kind
            return
        if self._said is None:
            return
        now = time.monotonic()
        if self._clear_since is None:
            self._clear_since = now
        elif now - self._clear_since >= HOLD_DOWN:
            log.warning("Redis can be trusted with receipts again")
            self._said = None

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(INTERVAL)
