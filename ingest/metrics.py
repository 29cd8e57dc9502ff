"""Prometheus metrics: each ingest process' own, and the deployment's as Redis holds it.

An ingest counts in its process (prometheus-client) and serves that at its /metrics. Everything
after the queue is counted in Redis, inside the workers' own Lua calls, and read by `dlrq api`'s
/metrics at each scrape: workers run in other processes, containers or hosts, which
prometheus-client's multiprocess mode (a shared directory on one host) cannot gather, and
counting in Redis costs no round trip. Several api replicas therefore each show the same
deployment-wide `dlrq_worker_*`, `dlrq_queue_*` and `dlrq_events_*` series: aggregate those
with max(), not sum().
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from dlrq.core import analytics, keys
from dlrq.core.deployment import Deployment
from dlrq.core.status import RANK

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


def analytics_families(state: Deployment, by_network: bool) -> Iterator[Metric]:
    """Outcomes and time to receipt; one series per network only when asked (their number is the networks')."""
    labels = ["network"] if by_network else []
    outcomes = CounterMetricFamily("dlrq_part_outcomes", "Times a part's outcome (its status once final) became "
                                   "status: its first final receipt, or a later one that decides", labels=[*labels,
                                                                                                        "status"])
    summed: dict[tuple[str, ...], int] = {}
    for (network, status), n in state.outcomes.items():
        key = (network, status) if by_network else (status,)
        summed[key] = summed.get(key, 0) + n
    for key, n in sorted(summed.items()):
        outcomes.add_metric(list(key), n)
    yield outcomes
    histograms: dict[tuple[str, ...], list[int]] = {}
    sums: dict[tuple[str, ...], float] = {}
    for network, counts in state.time_to_receipt.items():
        key = (network,) if by_network else ()
        buckets = histograms.setdefault(key, [0] * (len(analytics.LATENCY_BOUNDS) + 1))
        for index in range(len(buckets)):
            buckets[index] += counts.get(str(index), 0)
        sums[key] = sums.get(key, 0.0) + counts.get("sum", 0) / 1000
    family = HistogramMetricFamily("dlrq_time_to_receipt_seconds", "From a part's registration to its first "
                                   "final receipt (registered parts)", labels=labels)
    for key, buckets in sorted(histograms.items()):
        bounds = [*(floatToGoString(b) for b in analytics.LATENCY_BOUNDS), "+Inf"]
        family.add_metric(list(key), buckets=list(zip(bounds, accumulate(buckets))), sum_value=sums[key])
    yield family


def deployment_families(state: Deployment, by_network: bool = False) -> Iterator[Metric]:
    up = GaugeMetricFamily("dlrq_redis_up", "1 if Redis answered this scrape")
    up.add_metric([], 1 if state.redis_up else 0)
    yield up
    if not state.redis_up:
        return
    evicts = GaugeMetricFamily("dlrq_redis_may_evict", "1 if Redis may evict keys (acknowledged receipts among "
                               "them) when its memory is full: its maxmemory-policy is not noeviction",
                               labels=["policy"])
    evicts.add_metric([state.maxmemory_policy], 1 if state.may_evict else 0)
    yield evicts
    used = GaugeMetricFamily("dlrq_redis_memory_used_bytes", "Memory Redis uses (INFO used_memory)")
    used.add_metric([], state.used_memory)
    yield used
    limit = GaugeMetricFamily("dlrq_redis_memory_max_bytes", "Redis' maxmemory (0: no limit)")
    limit.add_metric([], state.maxmemory)
    yield limit
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
    yield from analytics_families(state, by_network)


def counter_families(counters: dict[str, int]) -> Iterator[Metric]:
    """The workers' counters hash (see keys.COUNTERS) as Prometheus counters."""
    receipts = CounterMetricFamily("dlrq_worker_receipts", "Receipts the workers processed: new, resend, "
                                   "dropped (a part's cap) or kept_aside (could not be applied: see failed jobs)",
                                   labels=["outcome"])
    batches = CounterMetricFamily("dlrq_worker_batches", "Batches the workers applied")
    changes = CounterMetricFamily("dlrq_worker_status_changes", "Parts whose status changed, by new status",
                                  labels=["status"])
    events = CounterMetricFamily("dlrq_events", "Events raised, by kind", labels=["kind"])
    shed = CounterMetricFamily("dlrq_record_shed_batches", "Batches of the record shed to make room in Redis")
    shed.add_metric([], counters.get(keys.COUNT_RECORD_SHED, 0))
    handlers = CounterMetricFamily("dlrq_handler_calls", "Handler calls, by handler and outcome",
                                   labels=["handler", "outcome"])
    receipts.add_metric(["new"], counters.get(keys.COUNT_NEW, 0))
    receipts.add_metric(["resend"], counters.get(keys.COUNT_RESEND, 0))
    receipts.add_metric(["dropped"], counters.get(keys.COUNT_DROPPED, 0))
    receipts.add_metric(["kept_aside"], counters.get(keys.COUNT_KEPT_ASIDE, 0))
    batches.add_metric([], counters.get(keys.COUNT_BATCHES, 0))
    for name, value in sorted(counters.items()):
        if name.startswith(keys.COUNT_STATUS):
            changes.add_metric([name.removeprefix(keys.COUNT_STATUS)], value)
        elif name.startswith(keys.COUNT_EVENTS):
            events.add_metric([name.removeprefix(keys.COUNT_EVENTS)], value)
        elif name.startswith(keys.COUNT_HANDLER):
            handler, _, outcome = name.removeprefix(keys.COUNT_HANDLER).rpartition(":")
            handlers.add_metric([handler, outcome], value)
    yield from (receipts, batches, changes, events, handlers, shed)


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


def exposition(state: Deployment, by_network: bool = False) -> bytes:
    """The deployment's figures, as Redis holds them at one moment."""
    deployment = CollectorRegistry(auto_describe=False)
    deployment.register(_Snapshot(list(deployment_families(state, by_network))))
    return generate_latest(deployment)
