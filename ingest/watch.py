"""The ingest's eye on Redis: it must never acknowledge a receipt a Redis that evicts keys may drop.

Every INTERVAL seconds (and at each /readyz) Redis is asked whether it takes writes and whether
its memory policy keeps every key. While it may evict, the webhook answers 503 (Vonage sends
the receipt again later) and /readyz is 503; each change of state is logged once.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, RedisError, TimeoutError

from dlrq.core import readiness
from dlrq.core.calls import NotReplicated, arun
from dlrq.core.readiness import Problem

log = logging.getLogger("dlrq.ingest")
INTERVAL = 10.0


class StoreWatch:
    def __init__(self, client: aioredis.Redis, where: str, replicas: int = 0) -> None:
        self._client = client
        self._where = where
        self._replicas = replicas
        self.problem: Problem | None = None
        # The reason the webhook refuses receipts now, or None: only a Redis that may evict them.
        self.unsafe: str | None = None

    async def check(self) -> Problem | None:
        try:
            problem = await arun(self._client, readiness.problem(self._replicas))
        except RedisError as exc:
            problem = readiness.unreachable(self._where, exc)
        self._now(problem)
        return problem

    def written(self, failure: Exception | None) -> None:
        """How the group commit's last write went: a failure is news only when it is a new kind."""
        if failure is None:
            if self.problem is not None and self.problem.kind != readiness.EVICTS:
                self._now(None)
        elif isinstance(failure, (ConnectionError, TimeoutError, OSError, asyncio.TimeoutError)):
            self._now(readiness.unreachable(self._where, failure))
        elif isinstance(failure, NotReplicated):
            self._now(readiness.too_few_replicas(failure))
        else:
            self._now(Problem(readiness.REFUSES_WRITES, f"Redis refuses writes: {failure}"))

    def _now(self, problem: Problem | None) -> None:
        if (problem and problem.kind) != (self.problem and self.problem.kind):
            if problem is None:
                log.warning("Redis can be trusted with receipts again")
            else:
                refusing = "; refusing receipts (503) until then" if problem.kind == readiness.EVICTS else \
                    "; answering 503 until it can (Vonage sends each receipt again)"
                log.error("%s%s", problem, refusing)
        self.problem = problem
        self.unsafe = problem.detail if problem and problem.kind == readiness.EVICTS else None

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(INTERVAL)
