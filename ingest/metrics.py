"""Prometheus metrics: the ingest's own, and the deployment's as Redis holds it.

The ingest counts in its process (prometheus-client). Everything after the queue is
counted in Redis, inside the workers' own Lua calls, and read here at each scrape:
workers run in other processes, containers or hosts, which prometheus-client's
multiprocess mode (a shared directory on one host) cannot gather, and counting in
Redis costs no round trip. Several ingest replicas therefore each show the same
deployment-wide `dlrq_worker_*`, `dlrq_queue_*` and `dlrq_events_*` series:
aggregate those with max(), not sum().
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import accumulate

import redis
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString
from rq import Queue
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import utcparse
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from . import keys
from .status import RANK

# Status words are the sender's to choose: unknown ones share a label, so the series stay few.
OTHER = "other"
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class IngestMetrics:
    """One registry per app, so that several apps in one process (tests) do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.webhook = WebhookCounts()
        self.registry.register(self.webhook)
        self._refused = Counter("dlrq_receipts_refused", "Requests to the webhook refused, by reason",
                                ["reason"], registry=self.registry)
        self.batch_size = Histogram("dlrq_batch_receipts", "Receipts per stored batch",
                                    buckets=BATCH_BUCKETS, registry=self.registry)

    def accepted(self, status: str, seconds: float) -> None:
        self.webhook.accepted(status, seconds)

    def refused(self, reason: str) -> None:
        self._refused.labels(reason).inc()


@dataclass
class Deployment:
    """What Redis says about the whole deployment at one moment."""

    redis_up: bool = True
    depth: dict[str, int] = field(default_factory=dict)
    oldest_age: dict[str, float] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    scheduled: dict[str, int] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)


class QueueKeys:
    """RQ's key names for one queue, taken from RQ (never connected: names only)."""

    def __init__(self, name: str) -> None:
        offline = redis.Redis()
        self.name = name
        self.queue = Queue(name, connection=offline, serializer=JSONSerializer).key
        self.failed = FailedJobRegistry(name, connection=offline).key
        self.scheduled = ScheduledJobRegistry(name, connection=offline).key
        self.workers = WORKERS_BY_QUEUE_KEY % name


async def read_deployment(client: aioredis.Redis, queues: Iterable[QueueKeys], now: datetime) -> Deployment:
    """Two round trips: the counts, then the enqueue time of each queue's oldest job."""
    queues = list(queues)
    state = Deployment()
    try:
        async with client.pipeline(transaction=False) as pipe:
            for q in queues:
                pipe.llen(q.queue).lindex(q.queue, 0).zcard(q.failed).zcard(q.scheduled).scard(q.workers)
            pipe.hgetall(keys.COUNTERS)
            *counts, counters = await pipe.execute()
        oldest: dict[str, bytes] = {}
        for i, q in enumerate(queues):
            depth, head, failed, scheduled, workers = counts[5 * i : 5 * i + 5]
            state.depth[q.name], state.failed[q.name] = depth, failed
            state.scheduled[q.name], state.workers[q.name] = scheduled, workers
            state.oldest_age[q.name] = 0.0
            if head is not None:
                oldest[q.name] = head
        state.counters = {k.decode(): int(v) for k, v in counters.items()}
        if oldest:
            async with client.pipeline(transaction=False) as pipe:
                for job_id in oldest.values():
                    pipe.hget(f"{Queue.job_class.redis_job_namespace_prefix}{job_id.decode()}", "enqueued_at")
                enqueued = await pipe.execute()
            for name, at in zip(oldest, enqueued):
                if at:
                    age = (now - utcparse(at.decode()).replace(tzinfo=timezone.utc)).total_seconds()
                    state.oldest_age[name] = max(0.0, age)
    except redis.RedisError:
        return Deployment(redis_up=False)
    return state


def deployment_families(state: Deployment) -> Iterator[Metric]:
    up = GaugeMetricFamily("dlrq_redis_up", "1 if Redis answered this scrape")
    up.add_metric([], 1 if state.redis_up else 0)
    yield up
    if not state.redis_up:
        return
    gauges = [
        ("dlrq_queue_depth", "Jobs waiting in the queue", state.depth),
        ("dlrq_queue_oldest_age_seconds", "Age of the oldest job waiting in the queue", state.oldest_age),
        ("dlrq_queue_failed_jobs", "Jobs that ran out of retries (dlrq failed list)", state.failed),
        ("dlrq_queue_scheduled_jobs", "Jobs waiting for their retry time", state.scheduled),
        ("dlrq_workers", "Workers listening on the queue", state.workers),
    ]
    for name, help_text, values in gauges:
        family = GaugeMetricFamily(name, help_text, labels=["queue"])
        for queue, value in values.items():
            family.add_metric([queue], value)
        yield family
    yield from counter_families(state.counters)


def counter_families(counters: dict[str, int]) -> Iterator[Metric]:
    """The workers' counters hash (see keys.COUNTERS) as Prometheus counters."""
    receipts = CounterMetricFamily("dlrq_worker_receipts", "Receipts the workers processed, new or resend",
                                   labels=["outcome"])
    batches = CounterMetricFamily("dlrq_worker_batches", "Batches the workers applied")
    changes = CounterMetricFamily("dlrq_worker_status_changes", "Parts whose status changed, by new status",
                                  labels=["status"])
    events = CounterMetricFamily("dlrq_events", "Events raised, by kind", labels=["kind"])
    handlers = CounterMetricFamily("dlrq_handler_calls", "Handler calls, by handler and outcome",
                                   labels=["handler", "outcome"])
    receipts.add_metric(["new"], counters.get("receipts:new", 0))
    receipts.add_metric(["resend"], counters.get("receipts:resend", 0))
    batches.add_metric([], counters.get("batches", 0))
    for name, value in sorted(counters.items()):
        kind, _, rest = name.partition(":")
        if kind == "status":
            changes.add_metric([rest], value)
        elif kind == "events":
            events.add_metric([rest], value)
        elif kind == "handler":
            handler, _, outcome = rest.rpartition(":")
            handlers.add_metric([handler, outcome], value)
    yield from (receipts, batches, changes, events, handlers)


class _Snapshot:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


class WebhookCounts:
    """Receipts accepted by status, and their acknowledgement latency, as plain numbers.

    prometheus-client's Counter.inc and Histogram.observe take a lock each (the webhook runs
    on one event loop and needs none), and cost the ingest about a tenth of its rate; these
    are counted in plain ints and turned into the same metric families at each scrape.
    """

    def __init__(self) -> None:
        self._statuses = {status: 0 for status in (*RANK, OTHER)}
        self._buckets = [0] * (len(ACK_BUCKETS) + 1)  # the last one is +Inf
        self._seconds = 0.0

    def accepted(self, status: str, seconds: float) -> None:
        self._statuses[status if status in self._statuses else OTHER] += 1
        self._buckets[bisect_left(ACK_BUCKETS, seconds)] += 1  # le: a bound counts what equals it
        self._seconds += seconds

    def collect(self) -> Iterator[Metric]:
        accepted = CounterMetricFamily("dlrq_receipts_accepted", "Receipts acknowledged (stored), by status",
                                       labels=["status"])
        for status, n in self._statuses.items():
            accepted.add_metric([status], n)
        yield accepted
        cumulative = list(accumulate(self._buckets))
        bounds = [*(floatToGoString(b) for b in ACK_BUCKETS), "+Inf"]
        yield HistogramMetricFamily("dlrq_ack_seconds", "From a receipt's request to its acknowledgement",
                                    buckets=list(zip(bounds, cumulative)), sum_value=self._seconds)


def exposition(metrics: IngestMetrics, state: Deployment) -> bytes:
    deployment = CollectorRegistry(auto_describe=False)
    deployment.register(_Snapshot(list(deployment_families(state))))
    return generate_latest(metrics.registry) + generate_latest(deployment)
