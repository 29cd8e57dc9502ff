"""A fault run: the load, the faults during it, the drain, and the oracle's verdict."""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from dlrq.core import keys
from dlrq.core.calls import run
from dlrq.core.jobs import handler_job_id
from dlrq.core.records import load_part
from dlrq.core.status import FINAL
from dlrq.core.store import find_message
from tests.support.oracle import dedupe_key, history_keys
from tests.support.receipts import receipt
from tests.support.receivers import WebhookReceiver
from workers.recovery import abandoned

from .cluster import SECRET, WEBHOOK, Cluster, ReplicatedCluster, Topology
from .plan import Scale, build_plan
from .report import Report
from .vonage import CONNECTIONS, Vonage

QUEUES = ("dlrq", "dlrq-handlers")
GENUINE, POISON, FORGED = "genuine", "poison", "forged"
# Longest pause between a recovery probe's tries: how finely "acknowledged again" is measured.
PROBE_EVERY = 0.2


class Run:
    """What every edition shares: the load, recovery probes, the drain and the oracle."""

    def __init__(self, scale: Scale, seed: int, cluster: Any, receiver: WebhookReceiver) -> None:
        self.scale, self.seed = scale, seed
        self.plan = build_plan(scale, seed)
        self.receiver = receiver
        self.cluster = cluster
        planned = {dedupe_key(p) for _, p in self.plan.receipts}
        self.report = Report(seed=seed, planned=len(planned), planned_statuses=sum(k[1] == "messages" for k in planned),
                             expected_events=len(self.plan.expected_events))
        self.vonage = Vonage(self.cluster.base, self.report, seed)
        self.rng = random.Random(seed + 1)
        self.probes: list[dict[str, str]] = []
        self.recoveries: list[asyncio.Task] = []
        self.t0 = 0.0  # when the load began (time.monotonic())

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
                t0 = self.t0 = time.monotonic()
                self.vonage.give_up_at = t0 + self.scale.duration + self.scale.drain_timeout
                load = asyncio.create_task(self._load(client, t0))
                await self.faults(t0)
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
        load = sorted([(at, GENUINE, p) for at, p in self.plan.receipts] + [(at, POISON, p) for at, p in self.plan.poison]
                      + [(at, FORGED, p) for at, p in self.plan.forged], key=lambda item: item[0])
        for at, kind, params in load:
            while next_send is not None and next_send[0] <= at:
                tasks.append(asyncio.create_task(self.vonage.register(client, next_send[1])))
                next_send = next(sends, None)
            delay = t0 + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            deliver = self.vonage.deliver(client, params)
            tasks.append(asyncio.create_task(deliver if kind == GENUINE else self._hostile(kind, deliver)))
        for _, send in [next_send, *sends] if next_send else []:
            tasks.append(asyncio.create_task(self.vonage.register(client, send)))
        await asyncio.gather(*tasks)

    async def _hostile(self, kind: str, delivery: Coroutine[Any, Any, bool]) -> None:
        """A poison receipt must be refused; a forged one may be taken (and then changes no outcome)."""
        taken = await delivery
        self.report.hostile[f"{kind} {'acknowledged' if taken else 'refused'}"] += 1

    async def _at(self, t0: float, fraction: float) -> None:
        await asyncio.sleep(max(0.0, t0 + fraction * self.scale.duration - time.monotonic()))

    async def faults(self, t0: float) -> None:
        """The edition's faults, each in its own stretch of the load."""
        raise NotImplementedError

    def fault_begins(self) -> Counter[str]:
        """The answers so far, to count those a fault caused."""
        return Counter(self.report.answers)

    def _recover(self, fault: str, began: Counter[str] | None = None) -> None:
        self.report.fault_ends[fault] = time.monotonic() - self.t0
        self.recoveries.append(asyncio.create_task(self._probe(fault, time.monotonic(), began)))

    async def _probe(self, fault: str, since: float, began: Counter[str] | None) -> None:
        """Recovery: until a new receipt sent when the fault ended is acknowledged and applied."""
        params = receipt(f"F{self.seed:04d}PROBE{len(self.probes)}", "delivered", 5)
        self.probes.append(params)
        # Tried every 0.2 s or so: with Vonage's backoff (up to 2 s, plus a 503's own wait) it measured
        # when acknowledgements resumed up to 2.5 s late.
        if not await self.vonage.deliver(self.probe_client, params, backoff=0.1, slots=asyncio.Semaphore(),
                                         longest=PROBE_EVERY):
            return
        self.report.acknowledged_after[fault].append(time.monotonic() - since)
        if began is not None:
            caused = Counter(self.report.answers) - began
            self.report.during[fault].append({k: caused[k] for k in ("503", "refused", "timeout") if caused[k]})
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
        """Until nothing is left to do, seen twice a second apart (a job moving between lists is
        in one of them at every instant, and each look reads them all in one transaction)."""
        deadline = time.monotonic() + self.scale.drain_timeout
        settled_once = False
        while time.monotonic() < deadline:
            try:
                settled = await asyncio.to_thread(self._settled)
            except redis.RedisError:
                settled = False
            if settled and settled_once:
                return True
            settled_once = settled
            await asyncio.sleep(0.5 if not settled else 1.0)
        return False

    def _settled(self) -> bool:
        with self.cluster.client() as client:
            with client.pipeline(transaction=True) as look:
                for name in QUEUES:
                    queue = Queue(name, connection=client, serializer=JSONSerializer)
                    look.llen(queue.key).llen(f"{queue.key}:intermediate")
                    look.zcard(StartedJobRegistry(queue=queue).key).zcard(ScheduledJobRegistry(queue=queue).key)
                if any(look.execute()):
                    return False
            probe_calls = set(self.cluster.probe_calls())
        with self.receiver.lock:
            delivered = set(self.receiver.calls)
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
        report.acknowledged = len(acked & sent)
        report.not_acknowledged = len(sent - acked)
        # A victim of forged receipts keeps every genuine receipt that decides; one that does not (an
        # `accepted` among 150 forged ones) is noise the part's caps may drop, as they drop the forged.
        victims = {p["messageId"] for _, p in self.plan.forged}
        with self.cluster.client() as client:
            by_part: dict[str, set[tuple[str, ...]]] = defaultdict(set)
            for key in acked & sent:
                if key[0] not in victims or key[1] in FINAL:
                    by_part[key[0]].add(key)
            part_ids = sorted(by_part)
            stored = client.mget([keys.part(i) for i in part_ids]) if part_ids else []
            for part_id, doc in zip(part_ids, stored):
                have = history_keys(part_id, load_part(doc)["history"] if doc else [])
                report.lost += sorted("/".join(k) for k in by_part[part_id] - have)
            for logical_id, expected in self.plan.expected_status.items():
                view = run(client, find_message(logical_id))
                if view is None or view["status"] != expected:
                    report.wrong_status.append(f"{logical_id}: {view and view['status']} != {expected}")
            probe_calls = Counter(self.cluster.probe_calls())
            if not report.drained:
                report.leftovers = self._leftovers(client)
            for name in QUEUES:
                report.failed_jobs += FailedJobRegistry(queue=Queue(name, connection=client)).count
        with self.receiver.lock:
            webhook_calls = Counter(self.receiver.calls)
            report.bad_signatures = self.receiver.bad_signatures
        expected = self.plan.expected_events
        for handler, calls in zip((WEBHOOK, self.cluster.probe), (webhook_calls, probe_calls)):
            report.delivered_events[handler] = len(calls)
            report.duplicate_calls[handler] = sum(n - 1 for n in calls.values())
            report.missing_events[handler] = sorted(expected - set(calls))
            report.unexpected_events[handler] = sorted(set(calls) - expected)
        # The contract's "barring a crash inside the handler": a worker killed during a call (after
        # the endpoint took the request, before the call was marked made) calls again. A duplicate
        # is put down to that only when its handler job was abandoned by a worker that died.
        with self.cluster.client() as client:
            for handler, calls in zip((WEBHOOK, self.cluster.probe), (webhook_calls, probe_calls)):
                report.abandoned_calls[handler] = sum(
                    n - 1 for event, n in calls.items() if n > 1 and _abandoned(client, handler_job_id(event, handler)))


def _abandoned(client: redis.Redis, job_id: str) -> bool:
    try:
        return abandoned(Job.fetch(job_id, connection=client, serializer=JSONSerializer)) > 0
    except NoSuchJobError:
        return False


def run_once(scale: Scale, seed: int, keep: Path | None = None, edition: str = "standalone",
             topology: Topology = Topology()) -> Report:
    from .failover import FailoverRun
    from .standalone import StandaloneRun

    workdir = Path(tempfile.mkdtemp(prefix=f"dlrq-faults-{edition}-"))
    receiver = WebhookReceiver(SECRET, timeout=1.0)
    if edition == "failover":
        cluster = ReplicatedCluster(scale, workdir, receiver, topology)
        run: Run = FailoverRun(scale, seed, cluster, receiver)
    else:
        run = StandaloneRun(scale, seed, Cluster(scale, workdir, receiver), receiver)
    try:
        return asyncio.run(run.run())
    finally:
        if keep:
            shutil.copytree(workdir, keep / f"{edition}-seed-{seed}", dirs_exist_ok=True)
        if getattr(run.cluster, "disk", None) is not None:
            run.cluster.disk.unmount()
        shutil.rmtree(workdir, ignore_errors=True)


def runs(scale: Scale, seeds: list[int], keep: Path | None = None, edition: str = "standalone",
         topology: Topology = Topology()) -> Iterator[Report]:
    for seed in seeds:
        yield run_once(scale, seed, keep, edition, topology)
