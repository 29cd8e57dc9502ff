"""Graceful shutdown with real processes: SIGTERM to the ingest and to a worker while receipts flow."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
import redis
from rq.registry import FailedJobRegistry, StartedJobRegistry

from dlrq.core import keys
from dlrq.core.records import load_part
from dlrq.core.settings import Settings
from tests.support.processes import dlrq_env, eventually, free_port, spawn, wait_http
from tests.support.queues import queue_of
from tests.support.receipts import receipt

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PATH = "/webhooks/delivery-receipt"


class Load:
    """Posts new receipts from 32 connections until stopped; remembers every answer."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.answers: dict[str, int | str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def acknowledged(self) -> list[str]:
        return [mid for mid, answer in self.answers.items() if answer in (200, 204)]

    async def _run(self) -> None:
        counter = iter(range(10**9))
        async with httpx.AsyncClient(base_url=self.base, timeout=10) as client:

            async def connection() -> None:
                while not self._stop.is_set():
                    mid = f"SHUT{next(counter):010d}"
                    try:
                        self.answers[mid] = (await client.post(PATH, json=receipt(mid, "delivered"))).status_code
                    except httpx.TransportError as exc:
                        self.answers[mid] = type(exc).__name__
                        await asyncio.sleep(0.01)

            await asyncio.gather(*(connection() for _ in range(32)))


def test_sigterm_to_ingest_and_worker_while_receipts_flow_loses_nothing(redis_url):
    client = redis.Redis.from_url(redis_url)
    settings = Settings(redis_url=redis_url)
    queue = queue_of(client, settings)
    port = free_port()
    env = dlrq_env(redis_url, DLRQ_PORT=str(port))
    ingest = spawn("ingest", env)
    worker = spawn("worker", env, "--name", "first")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz")
        with Load(base) as load:
            eventually(lambda: len(load.acknowledged()) > 2000, 30, "receipts flow")
            # Catch the worker inside a batch, then ask it to stop.
            started = StartedJobRegistry(queue=queue)
            eventually(lambda: started.count > 0, 10, "the worker takes a batch")
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0
            assert started.count == 0, "the batch it held was finished, not abandoned"
            eventually(lambda: len(load.acknowledged()) > 4000, 30, "receipts keep flowing")
            ingest.send_signal(signal.SIGTERM)
            assert ingest.wait(timeout=30) == 0
            time.sleep(0.5)  # the load meets a closed port for a while
        acknowledged = load.acknowledged()
        refused = [a for a in load.answers.values() if a not in (200, 204)]
        assert refused, "the ingest was stopped while requests came in"
        assert all(a in ("ConnectError", "RemoteProtocolError", "ReadError", 503) for a in refused), set(refused)

        burst = [sys.executable, "-m", "dlrq", "worker", "--burst"]
        assert subprocess.run(burst, env=env, timeout=120).returncode == 0
        assert queue.count == 0
        assert FailedJobRegistry(queue=queue).count == 0, "no batch half-applied and failed"
        with client.pipeline(transaction=False) as pipe:
            for mid in acknowledged:
                pipe.get(keys.part(mid))
            parts = pipe.execute()
        lost = [mid for mid, part in zip(acknowledged, parts) if part is None]
        assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged receipts lost"
        assert all(load_part(p)["history"][0]["status"] == "delivered" for p in parts)
    finally:
        for proc in (ingest, worker):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        client.close()
