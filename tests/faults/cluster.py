"""The processes of a fault run: Valkey, one ingest, several workers, supervised as compose would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from dlrq.cli.embedded import binary
from dlrq.core import connect
from dlrq.core.settings import Settings
from tests.support.disk import mount
from tests.support.ha import Group
from tests.support.probe import CALLS, CALLS_FILE
from tests.support.processes import DLRQ, ROOT, dlrq_env, eventually, free_port
from tests.support.receivers import WebhookReceiver

from .plan import Scale

SECRET = "fault-secret"
# Vonage signs every receipt (md5hash) and every Messages API status (a JWT) with the account's secret.
SIGNATURE_SECRET = "fault-signature-secret-0123456789abcdef"
WEBHOOK = "webhook"


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

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

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
        self.probe = "tests.support.probe:record"
        self.ingest, self.workers = dlrq_processes(scale, workdir, receiver, self.ingest_port, self.probe,
                                                   DLRQ_REDIS_URL=self.redis_url)

    @property
    def processes(self) -> list[Process]:
        return [self.redis, self.ingest, *self.workers]

    def probe_calls(self) -> list[str]:
        """The event ids the probe handler was called with, in order."""
        with self.client() as client:
            return [json.loads(call)["id"] for call in client.lrange(CALLS, 0, -1)]

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=1)

    def start(self) -> None:
        self.redis.start()
        eventually(lambda: _pings(self.client), 20, "Valkey to answer")
        start_dlrq(self.ingest, self.workers, self.base)

    def stop(self) -> None:
        for process in [self.ingest, *self.workers, self.redis]:
            process.stop()

    def supervise(self) -> None:
        for process in self.processes:
            process.supervise()


@dataclass(frozen=True)
class Topology:
    """The failover edition's group and how dlrq uses it."""

    replicas: int = 2
    ack_replicas: int = 1  # DLRQ_ACK_REPLICAS
    min_replicas_to_write: int = 1  # Valkey's


class ReplicatedCluster:
    """A primary, its replicas and three sentinels (down-after 2 s); one ingest and `workers` workers
    that find the primary through the sentinels, acknowledging once `ack_replicas` replicas have a batch."""

    def __init__(self, scale: Scale, workdir: Path, receiver: WebhookReceiver, topology: Topology) -> None:
        self.group = Group(workdir, replicas=topology.replicas, sentinels=3, down_after_ms=2000,
                           min_replicas_to_write=topology.min_replicas_to_write)
        self.ingest_port = free_port()
        self.base = f"http://127.0.0.1:{self.ingest_port}"
        self.settings = Settings(redis_sentinels=self.group.sentinel_addresses)
        # The probe handler keeps its calls in a file: kept in Redis, a failover could take them back.
        self.probe = "tests.support.probe:record_to_file"
        self.calls_file = workdir / "probe-calls.jsonl"
        self.calls_file.touch()
        self.ingest, self.workers = dlrq_processes(scale, workdir, receiver, self.ingest_port, self.probe,
                                                   DLRQ_REDIS_SENTINELS=self.group.sentinel_addresses,
                                                   DLRQ_ACK_REPLICAS=str(topology.ack_replicas),
                                                   **{CALLS_FILE: str(self.calls_file)})

    @property
    def processes(self) -> list[Process]:
        return [self.ingest, *self.workers]

    def probe_calls(self) -> list[str]:
        return [json.loads(line)["id"] for line in self.calls_file.read_text().splitlines() if line]

    def client(self) -> redis.Redis:
        return connect.client(self.settings)

    def start(self) -> None:
        self.group.start()
        start_dlrq(self.ingest, self.workers, self.base)

    def stop(self) -> None:
        for process in [self.ingest, *self.workers]:
            process.stop()
        self.group.stop()

    def supervise(self) -> None:
        for process in self.processes:
            process.supervise()
        self.group.supervise()


def dlrq_processes(scale: Scale, workdir: Path, receiver: WebhookReceiver, port: int, probe: str,
                   **where: str) -> tuple[Process, list[Process]]:
    """The ingest and the workers, with the suite's settings: short timeouts, so that a run drains in
    minutes. Events go to the webhook and to `probe`, a handler by dotted path."""
    handlers = ",".join((WEBHOOK, probe))
    env = dlrq_env(None, **where, **{
        "DLRQ_PORT": str(port), "DLRQ_LOG_FORMAT": "text", "DLRQ_JOB_TIMEOUT": "5", "DLRQ_HANDLER_TIMEOUT": "15",
        "DLRQ_HANDLER_RETRY_BACKOFF": "5,10,20,30,60,60,60,60",
        "DLRQ_MAINTENANCE_INTERVAL": "2", "DLRQ_ALERT_HANDLERS": handlers,
        "DLRQ_RETRY_HANDLERS": handlers, "DLRQ_WEBHOOK_URL": receiver.url,
        "DLRQ_WEBHOOK_SECRET": SECRET, "DLRQ_WEBHOOK_TIMEOUT": str(receiver.timeout),
        "DLRQ_RETRY_BACKOFF": "2", "DLRQ_FAILURE_RATE_MIN_VOLUME": str(10**9),
        "DLRQ_SIGNATURE_SECRET": SIGNATURE_SECRET,
    })
    ingest = Process("ingest", [*DLRQ, "ingest"], env, workdir)
    # No fixed names: RQ refuses to start a worker under the name of one it has not seen die.
    workers = [Process(f"worker-{i}", [*DLRQ, "worker"], env, workdir) for i in range(scale.workers)]
    return ingest, workers


def start_dlrq(ingest: Process, workers: list[Process], base: str) -> None:
    ingest.start()
    for worker in workers:
        worker.start()

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    eventually(ready, 30, "the ingest to be ready", pause=0.1)


def _pings(client: Callable[[], redis.Redis]) -> bool:
    try:
        with client() as c:
            return bool(c.ping())
    except redis.RedisError:
        return False
