"""How the workers take jobs from their queues, and what they tidy up after RQ."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis
from rq import Queue
from rq.executions import Execution
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.utils import as_text
from rq.utils import now as utcnow

# RQ holds its registry-cleaning lock for 15 minutes and releases it when done (in milliseconds):
# a worker killed while cleaning would stop the recovery of abandoned batches for that long.
CLEANING_LOCK_TTL = 60
# A job is in an intermediate list for milliseconds between being taken and started; one seen
# there twice this far apart was taken by a worker that died. (RQ waits a minute.) A live worker
# cut off by Redis meanwhile puts its job back itself, only if it is still there.
STRANDED_AFTER = 5


# How long a job's first sighting in an intermediate list is remembered. Most jobs seen there are
# being started at that very moment: RQ keeps each sighting a day, one key per job.
FIRST_SEEN_TTL = 3600


class PromptIntermediateQueue(IntermediateQueue):
    def set_first_seen(self, job_id: str) -> bool:
        return bool(self.connection.set(self.get_first_seen_key(job_id), utcnow().timestamp(), nx=True,
                                        ex=FIRST_SEEN_TTL))

    def should_be_cleaned_up(self, job_id: str) -> bool:
        first_seen = self.get_first_seen(job_id)
        return first_seen is not None and (utcnow() - first_seen).total_seconds() > STRANDED_AFTER

    def cleanup(self, worker: Any, queue: Queue) -> None:
        """Left to dlrq's maintenance (`recovery.rerun_stranded`): RQ's runs only under its cleaning
        lock, and reruns a stranded job as a failure that spends one of its retry steps."""


class TakeThroughIntermediate(Queue):
    """Every job is taken by moving it to its queue's intermediate list, as RQ does for a
    worker of one queue only.

    With several queues RQ pops the job (BLPOP): a worker that stops or dies between that
    pop and registering the job as started loses it, receipts and all. A job in an
    intermediate list is found by RQ's maintenance and run again (batches are idempotent).
    Waiting blocks on the first queue (receipts); the others are looked at between waits.
    Abandoned jobs are found sooner than RQ would (STRANDED_AFTER, CLEANING_LOCK_TTL), by
    `recovery.rerun_stranded`.
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
