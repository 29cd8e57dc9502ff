"""Failed work: receipt batches and handler calls that ran out of retries, in RQ's failed registries.

Shared by `dlrq failed` and the console: list (newest first), requeue, purge.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from . import keys


@dataclass(frozen=True)
class FailedJob:
    queue: str
    id: str
    description: str
    reason: str
    failed_at: datetime | None
    messages: tuple[str, ...] = ()  # what it was about: an event's message, a batch's first receipts


SHOWN_MESSAGES = 5


def messages_of(job: Job) -> tuple[str, ...]:
    """The messages a failed job was about, as far as its arguments say (a job's data may be anything)."""
    try:
        first = job.args[0] if job.args else None
        if job.func_name == keys.DELIVER_JOB and isinstance(first, dict):
            found = [first.get("message") or first.get("part")]
        elif job.func_name == keys.BATCH_JOB and isinstance(first, list):
            found = [r.get("params", {}).get("messageId") for r in first[:SHOWN_MESSAGES] if isinstance(r, dict)]
        else:
            found = []
    except Exception:  # noqa: BLE001 - unreadable arguments name no message
        return ()
    return tuple(m for m in found if isinstance(m, str) and m)


def registries(connection: redis.Redis, queue_names: Iterable[str]) -> list[FailedJobRegistry]:
    return [FailedJobRegistry(queue=Queue(name, connection=connection, serializer=JSONSerializer))
            for name in queue_names]


def reason(job: Job) -> str:
    """The exception that ended the job's last run: the first line after the traceback's frames."""
    result = job.latest_result()
    lines = (result.exc_string or "").strip().splitlines() if result else []
    frames = [n for n, line in enumerate(lines) if line.startswith(" ")]
    after = lines[frames[-1] + 1:] if frames else lines[-1:]
    return after[0] if after else ""


def list_failed(connection: redis.Redis, queue_names: Iterable[str], limit: int | None = None) -> list[FailedJob]:
    """Newest first (at most `limit` of them), each with the exception that failed it."""
    found = []
    for registry in registries(connection, queue_names):
        # Scored by expiry, the same time after each failure: the highest are the newest.
        for job_id in registry.get_job_ids(0, -1 if limit is None else limit - 1, desc=True):
            try:
                job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
            except NoSuchJobError:
                continue
            found.append(FailedJob(registry.name, job_id, job.description or "", reason(job) or "?", job.ended_at,
                                   messages_of(job)))
    found.sort(key=lambda j: j.failed_at.timestamp() if j.failed_at else 0.0, reverse=True)
    return found[:limit] if limit is not None else found


def requeue(connection: redis.Redis, queue_names: Iterable[str], job_ids: Collection[str] | None) -> int:
    """Put the named failed jobs (all of them with None) back on their queues; return how many."""
    count = 0
    for registry in registries(connection, queue_names):
        for job_id in registry.get_job_ids():
            if job_ids is None or job_id in job_ids:
                registry.requeue(job_id)
                count += 1
    return count


def purge(connection: redis.Redis, queue_names: Iterable[str], job_ids: Collection[str] | None = None) -> int:
    """Delete the named failed jobs (all of them with None); return how many."""
    count = 0
    for registry in registries(connection, queue_names):
        for job_id in registry.get_job_ids():
            if job_ids is None or job_id in job_ids:
                registry.remove(job_id, delete_job=True)
                count += 1
    return count


def count(connection: redis.Redis, queue_names: Iterable[str]) -> int:
    return sum(registry.count for registry in registries(connection, queue_names))
