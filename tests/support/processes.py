"""Real processes for the tests: ports, `dlrq` commands, and waiting for things to happen."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent.parent
DLRQ = [sys.executable, "-m", "dlrq"]


def free_port() -> int:
    """A free port below the ephemeral range (32768 and up on Linux): a server restarted on it
    must not find it taken by some client's outgoing connection meanwhile."""
    while True:
        port = random.randint(20_000, 30_000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def dlrq_env(redis_url: str | None, **extra: str) -> dict[str, str]:
    """The environment of a dlrq process: none of the caller's DLRQ_* settings, quiet logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLRQ_")}
    if redis_url is not None:
        env["DLRQ_REDIS_URL"] = redis_url
    env.update({"DLRQ_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT), **extra})
    return env


def spawn(command: str, env: dict[str, str], *args: str, **popen: object) -> subprocess.Popen[bytes]:
    """`dlrq <command>` in its own process group, so that killing it kills what it forked (RQ's scheduler)."""
    return subprocess.Popen([*DLRQ, command, *args], env=env, start_new_session=True, **popen)  # type: ignore[call-overload]


def stop(procs: list[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    """SIGTERM all at once (they stop side by side), then wait for each."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=timeout)


def dlrq(env: dict[str, str], *args: str, check: bool = True, **run: object) -> subprocess.CompletedProcess[str]:
    """Run a `dlrq` command to its end; its output as text."""
    return subprocess.run([*DLRQ, *args], env=env, capture_output=True, text=True, check=check, **run)  # type: ignore[call-overload]


def eventually(check: Callable[[], object], timeout: float = 30, what: str = "", pause: float = 0.05) -> None:
    """Wait until check() is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what or check}"
        time.sleep(pause)


def wait_http(url: str, timeout: float = 20.0) -> None:
    """Until GET url answers 200."""

    def up() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    eventually(up, timeout, f"{url} to answer 200", pause=0.1)


@contextmanager
def running(command: str, redis_url: str, **extra: str) -> Iterator[str]:
    """A real `dlrq ingest` or `dlrq api` process on a port of its own; yields its base URL.

    The ingest waits up to 5 ms to fill a batch: the test clients send fewer receipts at once than Vonage does.
    """
    port = free_port()
    env = dlrq_env(redis_url, DLRQ_PORT=str(port), DLRQ_API_PORT=str(port), DLRQ_BATCH_MAX_WAIT_MS="5", **extra)
    proc = spawn(command, env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def running_ingest(redis_url: str, **extra: str) -> contextlib.AbstractContextManager[str]:
    return running("ingest", redis_url, **extra)


class Service:
    """A long-running `dlrq` command (ingest, api, worker) on ports of its own, its log in a file."""

    def __init__(self, command: str, redis_url: str, log_dir: Path, **extra: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{command}-{self.port}.log"
        env = dlrq_env(redis_url, DLRQ_PORT=str(self.port), DLRQ_API_PORT=str(self.port), DLRQ_LOG_FORMAT="text",
                       **extra)
        with open(self.log_path, "wb") as log:
            self.process = spawn(command, env, stdout=log, stderr=log)
        if command in ("ingest", "api"):
            wait_http(f"{self.base}/healthz")

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
