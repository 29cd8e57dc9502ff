"""Real servers for the integration tests: an embedded Valkey the suite starts itself,
and the Redis named by DLRQ_TEST_REDIS_URL when it is set (a spare database, flushed after each test)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator

import pytest
import redis

from dlrq.cli.embedded import EmbeddedServer, embedded_server
from dlrq.core.settings import Settings
from tests.support.processes import running, running_ingest

SERVERS = ["embedded"] + (["external"] if os.environ.get("DLRQ_TEST_REDIS_URL") else [])


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """A test that fails before stopping what it started leaves it running in a session of its own:
    whatever the suite started is stopped when it ends."""
    yield
    out = subprocess.run(["pgrep", "-P", str(os.getpid())], capture_output=True, text=True).stdout
    for pid in map(int, out.split()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def embedded_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
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


@pytest.fixture
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A server of the test's own, for faults that would disturb others (its config, its process)."""
    server = EmbeddedServer(tmp_path_factory.mktemp("private"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def ingest_server(redis_url: str) -> Iterator[str]:
    """A real `dlrq ingest` process; yields its base URL."""
    with running_ingest(redis_url) as base:
        yield base


@pytest.fixture
def api_server(redis_url: str) -> Iterator[str]:
    """A real `dlrq api` process (messages, analytics, metrics); yields its base URL."""
    with running("api", redis_url) as base:
        yield base
