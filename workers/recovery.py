"""Jobs whose run was cut short: back on their queue at once, without spending a retry.

A batch whose worker was killed, or whose run was cut off by Redis refusing writes, did not
fail: it is put back at the front of its queue as soon as that is known. RQ would spend one of
the job's retry steps each time (a batch abandoned twice waited 5 s, then 15 s, ...), and a
long Redis outage would use them all up. Batches are idempotent and handler calls guarded, so
a second run is safe. A job cut short MAX_ABANDONED times is left to RQ's own handling
(its retry steps, then the failed registry), in case it is what kills its workers.

Each worker looks for such jobs between jobs, right before RQ's own clean-up (which would
fail an abandoned job, or spend one of its retries), and in a thread of its own (Rescue) every
maintenance interval: looked for between jobs only, they waited for every live worker's slow
handler call to end.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Sequence

import redis
from redis.client import Pipeline
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.utils import as_text, current_timestamp, parse_composite_key

from dlrq.core.calls import Script, run
from dlrq.core.jobs import flatten, recorded

from .queues import TakeThroughIntermediate

REQUEUE = Script.load(__package__, "requeue", libraries=("commands",))
# Where a job to put back is held (requeue.lua): its queue's intermediate list, its started registry.
HELD_IN_LIST, HELD_IN_REGISTRY = "list", "registry"
log = logging.getLogger("dlrq.worker")
MAX_ABANDONED = 5
# Job meta fields: how many times a run of the job was cut short, and of those how many times
# because its worker died (the rest: Redis cut it off).
CUT_SHORT = "dlrq_cut_short"
ABANDONED = "dlrq_abandoned"
ABANDONABLE = (JobStatus.STARTED, JobStatus.QUEUED)


def cut_short(job: Job) -> int:
    return int(job.meta.get(CUT_SHORT, 0))


def abandoned(job: Job) -> int:
    return int(job.meta.get(ABANDONED, 0))


def requeue_now(job: Job, queue: TakeThroughIntermediate, pipeline: Pipeline) -> None:
    """Back to the front of its queue, counted as cut short; its retries are untouched. That it was
    taken is forgotten (left in the intermediate list, or a sighting there, it would pass for
    stranded and run twice)."""
    job.meta[CUT_SHORT] = cut_short(job) + 1
    pipeline.lrem(queue.intermediate_queue_key, 1, job.id)
    pipeline.delete(queue.intermediate_queue.get_first_seen_key(job.id))
    queue._enqueue_job(job, pipeline=pipeline, at_front=True)


def claim_and_requeue(job: Job, queue: TakeThroughIntermediate, held_in: str, how: str, member: str) -> bool:
    """`requeue_now`, if this call takes `member` out of `held_in` (else another worker won the job):
    one atomic call, so that nothing can leave the job taken from there and never put back."""
    commands = recorded(queue.connection, lambda pipe: requeue_now(job, queue, pipe))
    return bool(run(queue.connection, REQUEUE(keys=[held_in], args=[how, member, *flatten(commands)])))


def rerun_abandoned(queue: TakeThroughIntermediate, own: Collection[str] = ()) -> list[str]:
    """Requeue the jobs of dead workers (their execution expired in the started registry); return their ids.
    `own`: the executions the looking worker runs itself, which it knows are alive (their heartbeats may
    have lapsed only because Redis refused them)."""
    registry = queue.started_job_registry
    connection = queue.connection
    requeued = []
    for composite in map(as_text, connection.zrangebyscore(registry.key, 0, current_timestamp())):
        job_id, execution_id = parse_composite_key(composite)
        if execution_id in own:
            continue
        try:
            job = Job.fetch(job_id, connection=connection, serializer=queue.serializer)
        except NoSuchJobError:
            continue
        # Still queued: its worker died between registering the run and starting it.
        if job.get_status(refresh=False) not in ABANDONABLE or cut_short(job) >= MAX_ABANDONED:
            continue  # RQ's own clean-up takes it from here
        if run_again(job, queue, registry.key, HELD_IN_REGISTRY, composite, "was abandoned by a worker that died"):
            requeued.append(job.id)
    return requeued


def rerun_stranded(queue: TakeThroughIntermediate) -> list[str]:
    """Requeue the jobs a worker took from the queue and died before starting (left in its
    intermediate list, outside the started registry, seen there STRANDED_AFTER apart); return
    their ids. RQ does this too, but only under its registry-cleaning lock and as a failure that
    spends a retry step."""
    intermediate = queue.intermediate_queue
    connection = queue.connection
    taken = intermediate.get_job_ids()
    # Read after the taken ones: a job started in between counts as started.
    started = set(queue.started_job_registry.get_job_ids(cleanup=False)) if taken else set()
    requeued = []
    for job_id in taken:
        if job_id in started or intermediate.set_first_seen(job_id):
            continue  # running, or seen for the first time
        if not intermediate.should_be_cleaned_up(job_id):
            continue  # not yet
        try:
            job = Job.fetch(job_id, connection=connection, serializer=queue.serializer)
        except NoSuchJobError:
            connection.lrem(intermediate.key, 1, job_id)  # nothing left to run
            continue
        if run_again(job, queue, intermediate.key, HELD_IN_LIST, job_id,
                     "was taken by a worker that died before starting it"):
            requeued.append(job.id)
    return requeued


def run_again(job: Job, queue: TakeThroughIntermediate, held_in: str, how: str, member: str, why: str) -> bool:
    """A job its dead worker left: back to the front of its queue, counted as abandoned, unless
    another worker won it first."""
    job.meta[ABANDONED] = abandoned(job) + 1
    if not claim_and_requeue(job, queue, held_in, how, member):
        return False
    log.warning("job %s (%s) %s: running it again", job.id, job.description, why)
    return True


def rescue(queues: Sequence[TakeThroughIntermediate], own: Collection[str] = ()) -> list[str]:
    """One look at every queue for the jobs of dead workers; return the ids run again."""
    return [job_id for queue in queues for job_id in (*rerun_abandoned(queue, own), *rerun_stranded(queue))]


class Rescue:
    """`rescue` every `interval` seconds in a thread, whatever the worker is running meanwhile; not while
    Redis refuses writes: then no worker can beat, and none can tell a dead one from a live one."""

    def __init__(self, queues: Sequence[TakeThroughIntermediate], interval: float,
                 own: Callable[[], Collection[str]], usable: Callable[[], bool]) -> None:
        self._queues = queues
        self._interval = interval
        self._own, self._usable = own, usable
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dlrq-rescue", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if self._usable():
                    rescue(self._queues, set(self._own()))
            except redis.RedisError as exc:  # the worker itself says when Redis fails, and waits
                log.debug("rescue skipped: %s", exc)
            except Exception:
                log.exception("looking for dead workers' jobs failed; looking again in %s s", self._interval)
