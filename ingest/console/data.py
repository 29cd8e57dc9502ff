"""What the console's pages show, read from Redis: throughput, queues, alerts, delivery by
network over time, a message's story, failed work."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import redis
import redis.asyncio as aioredis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from starlette.concurrency import run_in_threadpool

from dlrq.core import analytics, keys
from dlrq.core import failed as failed_jobs
from dlrq.core.calls import arun
from dlrq.core.correlate import render_part
from dlrq.core.deployment import Deployment, read_deployment
from dlrq.core.errcodes import meaning
from dlrq.core.events import PERMANENT_FAILURE, RECEIPT_MISSING, RETRIES_EXHAUSTED, RETRY, superseded
from dlrq.core.jobs import QueueKeys, called_by_another, handler_job_id
from dlrq.core.settings import Settings
from dlrq.core.store import find_message, read_analytics, read_message, read_parts

SERIES = {"hour": (10, 3600), "day": (300, 86_400)}  # bucket size, span: keys.RATE_BUCKETS


async def throughput(client: aioredis.Redis, span: str, now: float) -> dict[str, list[float]]:
    """Receipts/s accepted, new and resent, per bucket over the span (uPlot's columns: times first)."""
    size, seconds = SERIES[span]
    last = int(now // size)
    buckets = list(range(last - seconds // size + 1, last + 1))
    async with client.pipeline(transaction=False) as pipe:
        for bucket in buckets:
            pipe.hgetall(keys.rate(bucket, size))
        replies = await pipe.execute()
    series: dict[str, list[float]] = {"t": [b * size for b in buckets]}
    for field in (keys.RATE_ACCEPTED, keys.RATE_NEW, keys.RATE_RESEND):
        series[field] = [round(int(r.get(field.encode(), 0)) / size, 2) for r in replies]
    return series


async def overview(client: aioredis.Redis, settings: Settings, now: float) -> dict[str, Any]:
    state: Deployment = await read_deployment(client, [QueueKeys(n) for n in settings.queues],
                                              datetime.fromtimestamp(now, timezone.utc))
    alerts = [_alert(json.loads(a)) for a in await client.lrange(keys.ALERTS, 0, 9)]
    midnight = datetime.fromtimestamp(now, timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    today = (await arun(client, read_analytics("network", midnight, midnight + timedelta(days=1))))["total"]
    return {
        "redis_up": state.redis_up, "may_evict": state.may_evict, "policy": state.maxmemory_policy,
        "queues": {name: {"waiting": state.depth.get(name, 0), "oldest_age": state.oldest_age.get(name, 0.0),
                          "failed": state.failed.get(name, 0), "scheduled": state.scheduled.get(name, 0),
                          "workers": state.workers.get(name, 0)} for name in settings.queues},
        "alerts": alerts,
        "today": today,
        "throughput": await throughput(client, "hour", now),
    }


def _alert(alert: dict[str, Any]) -> dict[str, Any]:
    """What the overview shows of an alert: not the recipient's number; the err-code's meaning, none
    for 0 (Vonage's "delivered", which a failing part's code 0 is not: its status says what failed)."""
    alert.pop("to", None)
    code = alert.get("err_code")
    return {**alert, "err_meaning": meaning(code) if code != "0" else ""}


@dataclass
class Hourly:
    """One dimension's rows over a span, and each row's delivery rate hour by hour."""

    report: dict[str, Any]
    rates: dict[str, list[float | None]]


# The spans the networks page shows, each in whole hours ending with the current one.
SPANS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
# A row is flagged when its delivery rate is this far below the total's, over at least WORSE_FROM parts.
WORSE_BY, WORSE_FROM = 0.10, 10


def worse_than_the_rest(report: dict[str, Any]) -> set[str]:
    """The rows whose delivery rate is well below everyone's: what someone on call looks at first."""
    overall = report["total"]["delivery_rate"]
    if overall is None:
        return set()
    return {row["key"] for row in report["rows"] if row["final"] >= WORSE_FROM
            and row["delivery_rate"] is not None and row["delivery_rate"] <= overall - WORSE_BY}


async def hourly(client: aioredis.Redis, by: str, start: datetime, end: datetime) -> Hourly:
    hours = analytics.hours(start, end)
    async with client.pipeline(transaction=False) as pipe:
        for hour in hours:
            pipe.hgetall(keys.analytics(by, hour))
        buckets = await pipe.execute()
    report = analytics.report(by, start, end, analytics.tally(buckets), datetime.now(timezone.utc))
    # Worst first: the lowest delivery rate, rows without outcomes last.
    report["rows"].sort(key=lambda row: (row["delivery_rate"] is None, row["delivery_rate"] or 0, -row["final"]))
    rates: dict[str, list[float | None]] = {row["key"]: [] for row in report["rows"]}
    for bucket in buckets:
        rows = analytics.tally([bucket])
        for key, series in rates.items():
            row = rows.get(key)
            final = sum(row.finals.values()) if row else 0
            series.append(row.finals["delivered"] / final if row and final else None)
    return Hourly(report, rates)


PAGE = 50


@dataclass
class Found:
    """A page of the messages a search found, and how many it found in all."""

    views: list[dict[str, Any]]
    total: int
    first: int  # the page's first message, counted from 0, newest first


async def search(client: aioredis.Redis, query: str, first: int = 0) -> Found:
    """Messages found by logical id, a part's messageId, or client-ref (newest first, PAGE at a time
    from `first`)."""
    found = await arun(client, find_message(query))
    if found is not None:
        return Found([found], 1, 0)
    index = keys.by_ref(query)
    async with client.pipeline(transaction=False) as pipe:
        pipe.zcard(index)
        pipe.zrevrange(index, first, first + PAGE - 1)
        total, members = await pipe.execute()
    views = []
    for member in members:
        view = await arun(client, find_message(keys.indexed_id(member)))
        if view is not None and view["id"] not in {v["id"] for v in views}:
            views.append(view)
    return Found(views, total, first)


@dataclass
class Story:
    view: dict[str, Any]
    attempts: list[dict[str, Any]]  # registered_at and parts of each attempt (empty for an unregistered message)
    parts: list[dict[str, Any]]  # every part of every attempt, rendered with its whole history
    events: list[dict[str, Any]]  # raised events with each handler's deliveries


async def story(client: aioredis.Redis, sync: redis.Redis, settings: Settings, message_id: str) -> Story | None:
    view = await arun(client, find_message(message_id))
    if view is None:
        return None
    message = await arun(client, read_message(view["id"])) if view["registered"] else None
    attempts = message.attempts if message else []
    part_ids = [p["message_id"] for a in attempts for p in a["parts"] if p.get("message_id")] or [view["id"]]
    docs = await arun(client, read_parts(part_ids))
    parts = [render_part(i, n, docs.get(i)) for n, i in enumerate(part_ids)]
    candidates = _event_ids(view, part_ids)
    guards = await client.mget([keys.event(e) for e in candidates]) if candidates else []
    alerts = {a["id"]: a for a in view["alerts"]}
    # When each was raised: its guard says (dlrq 0.1-0.2 wrote '1' there), or its alert.
    raised = {e: guard.decode() for e, guard in zip(candidates, guards) if guard is not None}
    raised |= {a: alert.get("raised_at", "") for a, alert in alerts.items() if a not in raised}
    raised = {e: at if at != "1" else alerts.get(e, {}).get("raised_at", "") for e, at in raised.items()}
    in_order = sorted(raised, key=lambda e: raised[e])
    events = await run_in_threadpool(_deliveries, sync, settings, in_order, alerts, view)
    for event in events:
        event["raised_at"] = raised[event["id"]] or None
    return Story(view, attempts, parts, events)


def _event_ids(view: dict[str, Any], part_ids: list[str]) -> list[str]:
    """Every event this message may have raised (their ids name their causes)."""
    message = view["id"]
    ids = [f"{kind}:{message}:{a}" for a in range(1, view["attempts"] + 1) for kind in (RETRY, PERMANENT_FAILURE)]
    ids.append(f"{RETRIES_EXHAUSTED}:{message}")
    ids += [f"{RECEIPT_MISSING}:{part}" for part in part_ids]
    return ids


def _attempt(event_id: str) -> int | None:
    """The attempt a message's event names (retry:<message>:<attempt>), if it names one."""
    last = event_id.rpartition(":")[2]
    return int(last) if event_id.count(":") == 2 and last.isdigit() else None


def _deliveries(sync: redis.Redis, settings: Settings, event_ids: list[str],
                alerts: dict[str, dict[str, Any]], view: dict[str, Any]) -> list[dict[str, Any]]:
    events = []
    for event_id in event_ids:
        kind = event_id.partition(":")[0]
        handlers = settings.retry_handlers if kind == RETRY else settings.alert_handlers
        calls = []
        for handler in handlers:
            job_id = handler_job_id(event_id, handler)
            try:
                job = Job.fetch(job_id, connection=sync, serializer=JSONSerializer)
            except NoSuchJobError:
                calls.append(_made(job_id, sync.get(keys.delivered(job_id))) | {"handler": handler})
                continue
            status = job.get_status(refresh=False)
            waiting = status in (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.DEFERRED)
            if waiting and not called_by_another(sync, event_id, handlers, handler) \
                    and superseded(kind, _attempt(event_id), view):
                calls.append({"handler": handler, "status": "superseded", "at": None, "job_id": job.id,
                              "reason": "will not be called: the message was retried or delivered since"})
                continue
            calls.append({"handler": handler, "status": status.value if status else "unknown",
                          "at": job.ended_at or job.enqueued_at, "reason": failed_jobs.reason(job) if
                          status != JobStatus.FINISHED else "", "job_id": job.id})
        events.append({"id": event_id, "kind": kind, "alert": alerts.get(event_id), "calls": calls})
    return events


def _made(job_id: str, marker: bytes | None) -> dict[str, Any]:
    """A call whose job is gone: made, when its marker says (RQ keeps no result of a finished call)."""
    if marker is None:
        return {"status": "done, and forgotten", "at": None, "reason": ""}
    text = marker.decode()
    moot = text.startswith(keys.SUPERSEDED)
    try:
        at = datetime.fromtimestamp(float(text.removeprefix(keys.SUPERSEDED)), timezone.utc)
    except ValueError:
        at = None  # a marker written before 0.3 says only that the call was made
    if moot:
        return {"status": "superseded", "at": at, "reason": "not called: the message was retried or delivered since",
                "job_id": job_id}
    return {"status": JobStatus.FINISHED.value, "at": at, "reason": "", "job_id": job_id}
