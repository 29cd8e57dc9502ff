"""The RQ worker that applies receipt batches."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import redis
from redis.client import Pipeline
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, SCHEDULER_LOCKING_KEY_TEMPLATE
from rq.serializers import JSONSerializer
from rq.utils import as_text, utcparse
from rq.utils import now as utcnow
from rq.worker import WorkerStatus

from dlrq.core.calls import Script, run
from dlrq.core.connect import client
from dlrq.core.settings import Settings

from . import current
from .sweep import sweep

RELEASE_LOCK = Script.load(__package__, "release_lock")

# A batch runs in the worker's own process and cannot outlive its timeout, so a
# worker that has not been heard of for this long after it should have finished
# is dead, and its batch is handed to another worker.
ABANDON_MARGIN = 10
# RQ heartbeats the worker three times around every job, three round trips each;
# one a second keeps its key alive just as well (its TTL is 40 s or more).
HEARTBEAT_EVERY = 1.0
# Longest wait for a job before looking again at a stop request (and at the handler queue).
WAIT_AT_MOST = 1
# RQ's scheduler beats every second and holds its lock for 61 s: a scheduler silent for this long
# is dead (its worker was killed), and its lock is released rather than left to hold every
# scheduled job (batch and handler retries, retry events) for up to a minute.
SCHEDULER_DEAD_AFTER = 15
# RQ holds its registry-cleaning lock for 15 minutes and releases it when done (in milliseconds):
# a worker killed while cleaning would stop the recovery of abandoned batches for that long.
CLEANING_LOCK_TTL = 60
# A job is in an intermediate list for milliseconds between being taken and started; one seen
# there twice this far apart was taken by a worker that died. (RQ waits a minute.)
STRANDED_AFTER = 10


class PromptIntermediateQueue(IntermediateQueue):
    def should_be_cleaned_up(self, job_id: str) -> bool:
        first_seen = self.get_first_seen(job_id)
        return first_seen is not None and (utcnow() - first_seen).total_seconds() > STRANDED_AFTER


class TakeThroughIntermediate(Queue):
    """Every job is taken by moving it to its queue's intermediate list, as RQ does for a
    worker of one queue only.

    With several queues RQ pops the job (BLPOP): a worker that stops or dies between that
    pop and registering the job as started loses it, receipts and all. A job in an
    intermediate list is found by RQ's maintenance and run again (batches are idempotent).
    Waiting blocks on the first queue (receipts); the others are looked at between waits.
    Abandoned jobs are found sooner than RQ would (STRANDED_AFTER, CLEANING_LOCK_TTL).
    """

    @classmethod
    def dequeue_any(cls, queues: Iterable[Queue], timeout: int | None, connection: redis.Redis,  # type: ignore[override]
                    job_class: type[Job] | None = None, serializer: Any = None,
                    death_penalty_class: Any = None) -> tuple[Job, Queue] | None:
        queues = list(queues)
        while True:
            taken = next((t for t in (cls.lmove(connection, q.key, None) for q in queues) if t is not None), None)
            if taken is None:
                if timeout is None:
                    return None
                taken = cls.lmove(connection, queues[0].key, timeout)  # DequeueTimeout when none comes
            queue_key, job_id = (as_text(x) for x in taken)
            fetched = cls._fetch_dequeued_job(connection, queue_key, job_id, job_class=job_class,
                                              serializer=serializer, death_penalty_class=death_penalty_class)
            if fetched is not None:
                return fetched

    @property
    def intermediate_queue(self) -> IntermediateQueue:
        return PromptIntermediateQueue(self.key, connection=self.connection)

    def acquire_maintenance_lock(self) -> bool:
        return bool(self.connection.set(self.registry_cleaning_key, 1, nx=True, ex=CLEANING_LOCK_TTL))


class BatchWorker(SimpleWorker):
    """Runs each batch in-process: forking per job would cost more than the whole batch.

    Also spares RQ's per-job bookkeeping what does not need a round trip of its own.
    """

    _last_heartbeat_sent = float("-inf")
    settings: Settings

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        if pipeline is not None or timeout is not None:
            super().heartbeat(timeout, pipeline)
            return
        if time.monotonic() - self._last_heartbeat_sent < HEARTBEAT_EVERY:
            return
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(pipeline=pipe)
            pipe.execute()
        self._last_heartbeat_sent = time.monotonic()

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        if pipeline is None and state == WorkerStatus.IDLE and self._state == state:
            return
        super().set_state(state, pipeline)

    def _shutdown(self) -> None:
        """Warm shutdown without interrupting anything: RQ raises StopRequested from the
        signal handler when the worker is not busy, which can land after a job was taken and
        before it started. The stop is seen within WAIT_AT_MOST, or after the current job."""
        self._stop_requested = True

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None
                                     ) -> tuple[Job, Queue] | None:
        if timeout is None or max_idle_time is not None:
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        wait = min(timeout, WAIT_AT_MOST)
        while not self._stop_requested:
            # RQ gives up (None) after max_idle_time without a job: then the stop flag is checked.
            result = super().dequeue_job_and_maintain_ttl(wait, max_idle_time=wait)
            if result is not None:
                return result
        return None

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        super().prepare_job_execution(job, remove_from_intermediate_queue=True)

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        with current.using(self.settings):
            return super().perform_job(job, queue, execution)

    def run_maintenance_tasks(self) -> None:
        own = self.scheduler.name if self.scheduler else None
        release_dead_scheduler_locks(self.connection, [q.name for q in self.queues], datetime.now(timezone.utc),
                                     own)
        super().run_maintenance_tasks()
        sweep(self.connection, self.queues[0], self.settings, time.time())

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return int(job.timeout or 180) + ABANDON_MARGIN

    def execute_job(self, job: Job, queue: Queue) -> None:
        if job.retries_left is not None and job.retries_left < len(job.retry_intervals or ()):
            forget_dead_executions(job)
        super().execute_job(job, queue)


def release_dead_scheduler_locks(connection: redis.Redis, queue_names: list[str], now: datetime,
                                 alive: str | None = None) -> list[str]:
    """Return the queues whose scheduler lock was released; RQ's maintenance then takes it.

    `alive` names this worker's own scheduler: it has not beaten yet when the worker starts.
    """
    released = []
    for name in queue_names:
        lock = SCHEDULER_LOCKING_KEY_TEMPLATE % name
        holder = connection.get(lock)
        if holder is None or as_text(holder) == alive:
            continue
        beat = connection.hget(SCHEDULER_KEY_TEMPLATE % as_text(holder), "last_heartbeat")
        if beat is not None and (now - utcparse(as_text(beat))).total_seconds() < SCHEDULER_DEAD_AFTER:
            continue
        if run(connection, RELEASE_LOCK(keys=[lock], args=[holder])):
            released.append(name)
    return released


def forget_dead_executions(job: Job) -> None:
    """Drop executions of killed workers from a retried job's registry.

    RQ 3.0 keeps an execution in the job's registry 60 s longer than the
    execution itself; a retried job finishing inside that window fails in
    RQ's own clean-up ("Execution ... not found in Redis") and is retried
    again and again, although its work was done.
    """
    registry = job.execution_registry
    with job.connection.pipeline() as pipe:
        ids = registry.get_execution_ids()
        for execution_id in ids:
            pipe.exists(Execution(execution_id, job.id, job.connection).key)
        dead = [execution_id for execution_id, alive in zip(ids, pipe.execute()) if not alive]
    if dead:
        job.connection.zrem(registry.key, *dead)


def build_worker(settings: Settings, name: str | None = None) -> BatchWorker:
    """Receipt batches first, then handler calls: a slow handler must not hold receipts up for long."""
    connection = client(settings)
    names = (settings.queue, settings.handler_queue)
    queues = [TakeThroughIntermediate(name, connection=connection, serializer=JSONSerializer) for name in names]
    worker = BatchWorker(
        queues,
        name=name,
        queue_class=TakeThroughIntermediate,
        connection=connection,
        serializer=JSONSerializer,
        maintenance_interval=settings.maintenance_interval,
        # Maintenance runs between dequeues, so an idle worker must wake at least that often.
        worker_ttl=settings.maintenance_interval + 15,
    )
    worker.settings = settings
    return worker


def run_worker(settings: Settings, burst: bool = False, name: str | None = None) -> bool:
    worker = build_worker(settings, name)
    # RQ logs two lines per job at INFO: far too many at thousands of batches a minute.
    rq_level = "DEBUG" if settings.log_level.upper() == "DEBUG" else "WARNING"
    logging.getLogger("rq.worker").setLevel(rq_level)
    return worker.work(burst=burst, with_scheduler=True, logging_level=rq_level)
