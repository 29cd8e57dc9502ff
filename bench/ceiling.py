"""How far one primary goes: its main thread's time per receipt, and the drain rate of 1, 2, 4 workers.

Redis runs commands on one thread: whatever dlrq adds, that thread's time per receipt (the
ingest's write, the worker's apply and RQ's bookkeeping) bounds what one primary can take, however
many ingest and worker processes there are. Measured from INFO cpu's main-thread counters.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack
from typing import Any

import redis

from dlrq.core import connect
from dlrq.core.receipt import Receipt, utc_now_iso
from dlrq.core.settings import Settings
from ingest.enqueue import BatchEnqueuer

from .harness import process, python, redis_counters

BACKLOG = 60_000
BATCH = 32  # about what the ingest's group commit writes per batch under the benchmark's load


def fill(url: str, receipts: int, tag: int) -> None:
    """A backlog of batches, written as the ingest writes them."""

    async def write() -> None:
        settings = Settings(redis_url=url)
        client = connect.async_client(settings)
        enqueue = BatchEnqueuer(client, settings.queue, settings.job_timeout)
        for start in range(0, receipts, BATCH):
            await enqueue([Receipt(_params(tag, i), utc_now_iso()) for i in range(start, start + BATCH)])
        await client.aclose()

    asyncio.run(write())


def drain_with(url: str, client: redis.Redis, workers: int, tag: int) -> dict[str, Any]:
    """Receipts/s and Redis main-thread time per receipt while `workers` processes drain the backlog."""
    client.flushdb()
    fill(url, BACKLOG, tag)
    key = "rq:queue:dlrq"
    jobs = client.llen(key)
    env = {"DLRQ_REDIS_URL": url}
    argv = [python(), "-m", "dlrq", "worker"]
    cpu0, started = redis_counters(client)[2], time.monotonic()
    with ExitStack() as running:
        for _ in range(workers):
            running.enter_context(process(argv, env, None))
        while client.llen(key) or client.zcard("rq:wip:dlrq"):
            time.sleep(0.05)
    seconds, cpu = time.monotonic() - started, redis_counters(client)[2] - cpu0
    receipts = jobs * BATCH
    return {"workers": workers, "receipts": receipts, "seconds": seconds, "receipts_per_s": receipts / seconds,
            "redis_us_per_receipt": cpu / receipts * 1e6}


def ceiling(url: str, client: redis.Redis, ingest_us_per_receipt: float) -> dict[str, Any]:
    drains = [drain_with(url, client, n, tag=2000 + n) for n in (1, 2, 4)]
    client.flushdb()
    worker_us = min(d["redis_us_per_receipt"] for d in drains)
    return {"drains": drains, "ingest_us_per_receipt": ingest_us_per_receipt, "worker_us_per_receipt": worker_us,
            "receipts_per_s": 1e6 / (ingest_us_per_receipt + worker_us)}


def _params(tag: int, i: int) -> dict[str, str]:
    status = "accepted" if i % 5 == 0 else "delivered"
    return {"msisdn": f"447700{i % 1_000_000:06d}", "to": "Vonage APIs", "network-code": "23410",
            "messageId": f"C{tag:04d}{i:010d}", "price": "0.03330000", "status": status, "scts": "2001011400",
            "err-code": "0", "message-timestamp": "2020-01-01 14:00:00"}
