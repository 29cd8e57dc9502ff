"""What Redis says about the whole deployment: queues, workers and the shared counters.

Read by the ingest's /metrics at each scrape and by `dlrq stats`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import redis
import redis.asyncio as aioredis
from rq.utils import utcparse

from . import analytics, keys, readiness
from .jobs import QueueKeys


@dataclass
class Deployment:
    """What Redis says about the whole deployment at one moment."""

    redis_up: bool = True
    depth: dict[str, int] = field(default_factory=dict)
    oldest_age: dict[str, float] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    scheduled: dict[str, int] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    maxmemory_policy: str = readiness.SAFE_POLICY
    maxmemory: int = 0
    used_memory: int = 0
    # Analytics' Prometheus counters: (network, status) -> parts whose outcome became status;
    # network -> the time-to-receipt histogram's counts by bucket, and their sum in ms under "sum".
    outcomes: dict[tuple[str, str], int] = field(default_factory=dict)
    time_to_receipt: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def may_evict(self) -> bool:
        """Whether Redis may drop keys (acknowledged receipts among them) when its memory is full."""
        return self.maxmemory_policy != readiness.SAFE_POLICY and self.maxmemory > 0


async def read_deployment(client: aioredis.Redis, queues: Iterable[QueueKeys], now: datetime) -> Deployment:
    """Two round trips: the counts and the memory policy, then the enqueue time of each queue's oldest job."""
    queues = list(queues)
    state = Deployment()
    try:
        async with client.pipeline(transaction=False) as pipe:
            for q in queues:
                pipe.llen(q.queue).lindex(q.queue, 0).zcard(q.failed).zcard(q.scheduled).scard(q.workers)
            pipe.hgetall(keys.COUNTERS)
            pipe.info("memory")
            pipe.hgetall(keys.OUTCOMES)
            pipe.hgetall(keys.TIME_TO_RECEIPT)
            *counts, counters, memory, outcomes, latency = await pipe.execute()
        for field_, value in outcomes.items():
            network, _, status = field_.decode().rpartition(analytics.SEPARATOR)
            state.outcomes[(network, status)] = int(value)
        for field_, value in latency.items():
            network, _, bucket = field_.decode().rpartition(analytics.SEPARATOR)
            state.time_to_receipt.setdefault(network, {})[bucket] = int(value)
        state.maxmemory_policy = str(memory.get("maxmemory_policy", readiness.SAFE_POLICY))
        state.maxmemory = int(memory.get("maxmemory", 0))
        state.used_memory = int(memory.get("used_memory", 0))
        oldest: dict[str, bytes] = {}
        for i, q in enumerate(queues):
            depth, head, failed, scheduled, workers = counts[5 * i : 5 * i + 5]
            state.depth[q.name], state.failed[q.name] = depth, failed
            state.scheduled[q.name], state.workers[q.name] = scheduled, workers
            state.oldest_age[q.name] = 0.0
            if head is not None:
                oldest[q.name] = head
        state.counters = {k.decode(): int(v) for k, v in counters.items()}
        if oldest:
            async with client.pipeline(transaction=False) as pipe:
                for job_id in oldest.values():
                    pipe.hget(QueueKeys.job(job_id.decode()), "enqueued_at")
                enqueued = await pipe.execute()
            for name, at in zip(oldest, enqueued):
                if at:
                    age = (now - utcparse(at.decode()).replace(tzinfo=timezone.utc)).total_seconds()
                    state.oldest_age[name] = max(0.0, age)
    except redis.RedisError:
        return Deployment(redis_up=False)
    return state
