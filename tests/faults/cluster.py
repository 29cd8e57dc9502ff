"""The processes of a fault run: Valkey, one ingest, several workers, supervised as compose would."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import redis

from dlrq.cli.embedded import binary
from tests.support.disk import mount
from tests.support.processes import DLRQ, ROOT, dlrq_env, free_port
from tests.support.receivers import WebhookReceiver

from .plan import Scale

SECRET = "fault-secret"
HANDLERS = ("webhook", "tests.support.probe:record")


class Process:
    """A supervised process in its own process group (SIGKILL takes RQ's scheduler child too)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.log = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None
        self.wanted = False
        self.unplanned_exits = 0

    def start(self) -> None:
        self.wanted = True
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=self.log, stderr=self.log,
                                     start_new_session=True)

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        self.wanted = False
        self.signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait()

    def stop(self, timeout: float = 20) -> None:
        self.wanted = False
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def supervise(self) -> None:
        """Restart a process that exited by itself, as `restart: unless-stopped` does."""
        if self.wanted and self.proc and self.proc.poll() is not None:
            self.unplanned_exits += 1
            self.start()


class Cluster:
    """Valkey with `appendfsync always`, one ingest, `workers` workers, all on local ports."""

    def __init__(self, scale: Scale, workdir: Path, receiver: WebhookReceiver) -> None:
        self.redis_port, self.ingest_port = free_port(), free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.base = f"http://127.0.0.1:{self.ingest_port}"
        # Its data on a disk that a fault can fill up (a tmpfs, where the harness may mount one).
        disk = mount(workdir, "2g")
        self.disk, self.no_disk = (disk, None) if not isinstance(disk, str) else (None, disk)
        data = disk.path if self.disk else workdir / "data"
        data.mkdir(exist_ok=True)
        self.redis = Process("valkey", [
            str(binary()), "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(data),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
        ], dict(os.environ), workdir)
        env = dlrq_env(self.redis_url, **{
            "DLRQ_PORT": str(self.ingest_port), "DLRQ_LOG_FORMAT": "text", "DLRQ_JOB_TIMEOUT": "5", "DLRQ_HANDLER_TIMEOUT": "15",
            "DLRQ_HANDLER_RETRY_BACKOFF": "5,10,20,30,60,60,60,60",
            "DLRQ_MAINTENANCE_INTERVAL": "2", "DLRQ_ALERT_HANDLERS": ",".join(HANDLERS),
            "DLRQ_RETRY_HANDLERS": ",".join(HANDLERS), "DLRQ_WEBHOOK_URL": receiver.url,
            "DLRQ_WEBHOOK_SECRET": SECRET, "DLRQ_WEBHOOK_TIMEOUT": str(receiver.timeout),
            "DLRQ_RETRY_BACKOFF": "2", "DLRQ_FAILURE_RATE_MIN_VOLUME": str(10**9),
        })
        self.ingest = Process("ingest", [*DLRQ, "ingest"], env, workdir)
        # No fixed names: RQ refuses to start a worker under the name of one it has not seen die.
        self.workers = [Process(f"worker-{i}", [*DLRQ, "worker"], env, workdir) for i in range(scale.workers)]

    @property
    def processes(self) -> list[Process]:
        return [self.redis, self.ingest, *self.workers]

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=1)

    def wait_redis(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.client() as client:
                    client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def start(self) -> None:
        self.redis.start()
        self.wait_redis()
        self.ingest.start()
        for worker in self.workers:
            worker.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the ingest did not come up")
            time.sleep(0.1)

    def stop(self) -> None:
        for process in [self.ingest, *self.workers, self.redis]:
            process.stop()

    def supervise(self) -> None:
        for process in self.processes:
            process.supervise()
