"""The receipt queue, seen from the tests: draining it in-process, waiting for it to drain."""

from __future__ import annotations

import redis
from rq import Queue, SimpleWorker
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from dlrq.core import keys
from dlrq.core.settings import Settings
from workers.worker import build_worker

from .processes import eventually


def queue_of(client: redis.Redis, settings: Settings) -> Queue:
    return Queue(settings.queue, connection=client, serializer=JSONSerializer)


def drain(settings: Settings) -> None:
    """Run one worker in this process until the queue is empty."""
    worker = build_worker(settings)
    assert isinstance(worker, SimpleWorker)
    worker.work(burst=True, logging_level="WARNING")
    worker.connection.close()


def wait_drained(client: redis.Redis, settings: Settings, timeout: float) -> None:
    """Until no batch waits or runs (applied by some worker process)."""
    queue = queue_of(client, settings)
    started = StartedJobRegistry(queue=queue)
    eventually(lambda: queue.count == 0 and started.count == 0, timeout,
               f"the queue to drain ({queue.count} jobs queued, {started.count} started)", pause=0.2)


def pending_deadlines(r: redis.Redis) -> int:
    """Messages waiting to be judged for missing receipts (keys.DUE's lists, and 0.1-0.2's sorted set)."""
    return sum(r.llen(keys.due(b.decode())) for b in r.zrange(keys.DUE, 0, -1)) + r.zcard(keys.DEADLINES)
