"""Real servers for the integration tests: an embedded Valkey the suite starts itself,
and the Redis named by DLRQ_TEST_REDIS_URL when it is set (a spare database, flushed after each test)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from ingest.settings import Settings
from workers.worker import build_worker

SERVERS = ["embedded"] + (["external"] if os.environ.get("DLRQ_TEST_REDIS_URL") else [])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def embedded_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from workers.embedded import embedded_server

    with embedded_server(tmp_path_factory.mktemp("valkey")) as url:
        yield url


@pytest.fixture(params=SERVERS)
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "external" and request.node.get_closest_marker("slow"):
        pytest.skip("slow process tests run once, on the embedded server")
    url = request.getfixturevalue("embedded_url") if request.param == "embedded" else os.environ["DLRQ_TEST_REDIS_URL"]
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url)


def queue_of(client: redis.Redis, settings: Settings) -> Queue:
    return Queue(settings.queue, connection=client, serializer=JSONSerializer)


def drain(settings: Settings) -> None:
    """Run one worker in this process until the queue is empty."""
    worker = build_worker(settings)
    assert isinstance(worker, SimpleWorker)
    worker.work(burst=True, logging_level="WARNING")
    worker.connection.close()


def dlrq_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLRQ_")}
    env.update({"DLRQ_REDIS_URL": redis_url, "DLRQ_LOG_LEVEL": "WARNING", **extra})
    return env


def spawn(command: str, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """Each in its own process group, so that killing it kills what it forked (RQ's scheduler)."""
    return subprocess.Popen([sys.executable, "-m", "workers", command, *args], env=env, start_new_session=True)


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up")


@pytest.fixture
def ingest_server(redis_url: str) -> Iterator[str]:
    """A real `dlrq ingest` process; yields its base URL.

    It waits up to 50 ms to fill a batch: the test clients send fewer receipts at once than Vonage does.
    """
    port = free_port()
    proc = spawn("ingest", dlrq_env(redis_url, DLRQ_PORT=str(port), DLRQ_BATCH_MAX_WAIT_MS="5"))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


