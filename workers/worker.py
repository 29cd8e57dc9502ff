"""The RQ worker that applies receipt batches and calls the handlers.

dlrq runs its own work loop around RQ's pieces so that a sick Redis never stops a worker:
unreachable at start-up or later, refusing writes (full disk, memory, too few replicas, a
replica), or evicting keys, the worker says so once, waits, and resumes by itself; a job cut
off by it is run again at once; a stop request is obeyed within a second meanwhile.
"""

from __future__ import annotations

import logging
import signal
import time
from datetime import datetime, timezone

import redis
from redis.client import Pipeline
from rq import Queue, SimpleWorker, worker_registration
from rq.exceptions import DequeueTimeout
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.utils import now as utcnow
from rq.worker import DequeueStrategy, WorkerStatus
from rq.worker_registration import REDIS_WORKER_KEYS

from dlrq.core import keys
from dlrq.core.connect import client, is_transient
from dlrq.core.settings import Settings

from . import current
from .health import RedisHealth
from .queues import TakeThroughIntermediate, forget_dead_executions
from .recovery import HELD_IN_LIST, Rescue, claim_and_requeue, cut_short, requeue_now, rescue
from .scheduling import Scheduling, release_dead_scheduler_locks
from .sweep import Sweeper, sweep

log = logging.getLogger("dlrq.worker")

# A batch runs in the worker's own process and cannot outlive its timeout, so a
# worker that has not been heard of for this long after it should have finished
# is dead, and its batch is handed to another worker.
ABANDON_MARGIN = 5
# RQ heartbeats the worker three times around every job, three round trips each;
# one a second keeps its key alive just as well (its TTL is 40 s or more).
HEARTBEAT_EVERY = 1.0
# Longest wait for a job before looking again at a stop request (and at the handler queue).
WAIT_AT_MOST = 1
# The jobs dlrq enqueues (receipt batches, handler calls): RQ's features they do not use are skipped.
OWN_JOBS = (keys.BATCH_JOB, keys.DELIVER_JOB)


class CutShort(Exception):
    """A job's run was cut off by Redis (unreachable or refusing writes): it did not fail."""


class BatchWorker(SimpleWorker):
    """Runs each batch in-process: forking per job would cost more than the whole batch.

    Also spares RQ's per-job bookkeeping what does not need a round trip of its own.
    """

    _last_heartbeat_sent = float("-inf")
    settings: Settings
    health: RedisHealth
    scheduling: Scheduling | None = None
    rescuing: Rescue | None = None
    sweeping: Sweeper | None = None

    def work(self, burst: bool = False, logging_level: str | None = "WARNING", with_scheduler: bool = True,
             **ignored: object) -> bool:
        """RQ's loop, except that Redis failing is waited out, never a reason to quit."""
        self.bootstrap(logging_level)
        self._dequeue_strategy = DequeueStrategy.DEFAULT
        if with_scheduler and not burst:
            self.scheduling = Scheduling(self.connection, [q.name for q in self.queues], self.name)
            self.scheduling.start()
        if not burst:
            self.rescuing = Rescue(self.queues, self.maintenance_interval, lambda: list(self.executions),
                                   lambda: self.health.problem() is None)
            self.rescuing.start()
            self.sweeping = Sweeper(self.connection, self.queues[0], self.settings, self.name)
            self.sweeping.start()
            # A burst worker (in a test, or `dlrq worker --burst`) leaves SIGINT to its caller: a
            # handler of its own would outlive it and turn the next Ctrl-C into a stop request nobody reads.
            self._install_signal_handlers()
        completed = 0
        try:
            while not self._stop_requested:
                try:
                    if self.should_run_maintenance_tasks:
                        self.run_maintenance_tasks()
                    result = self.dequeue_job_and_maintain_ttl(None if burst else WAIT_AT_MOST)
                    if result is None:
                        break
                    self.execute_job(*result)
                    self.heartbeat()
                    completed += 1
                except redis.RedisError as exc:
                    if not is_transient(exc) or not self.health.wait(exc):
                        raise
        finally:
            self.teardown()
        return bool(completed)

    def teardown(self) -> None:
        if self.sweeping is not None:
            self.sweeping.stop()
        if self.rescuing is not None:
            self.rescuing.stop()
        if self.scheduling is not None:
            self.scheduling.stop()
        try:
            super().teardown()
        except redis.RedisError as exc:
            log.warning("stopped without telling Redis (%s): it forgets this worker within %d s", exc, self.worker_ttl)

    def subscribe(self) -> None:
        """No command channel: RQ's pubsub thread (for `rq` commands such as stopping a running job) logs
        an error every 2 s while Redis is away, and dlrq stops its workers with signals."""

    def unsubscribe(self) -> None:
        pass

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None
                                     ) -> tuple[Job, Queue] | None:
        """Wait at most WAIT_AT_MOST at a time, so that a stop request is seen within a second;
        None once stopping (or, with no timeout, once the queues are empty).

        A worker with jobs waiting goes straight on to the next and stays "busy" (a round trip
        less a job); it is "idle" while it waits."""
        while not self._stop_requested:
            self.heartbeat()
            if self.should_run_maintenance_tasks:
                self.run_maintenance_tasks()
            taken = self._take(None)
            if taken is not None or timeout is None:
                return taken
            self.set_state(WorkerStatus.IDLE)
            try:
                return self._take(timeout)
            except DequeueTimeout:
                continue
        return None

    def _take(self, timeout: int | None) -> tuple[Job, Queue] | None:
        return self.queue_class.dequeue_any(self._ordered_queues, timeout, connection=self.connection,
                                            job_class=self.job_class, serializer=self.serializer,
                                            death_penalty_class=self.death_penalty_class)

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

    def start(self, job: Job, queue: Queue) -> Execution:
        """RQ's two round trips before a job, in one MULTI/EXEC: register the run (its execution, the
        started registry, the worker busy) and mark the job started, out of the intermediate list. RQ
        runs them apart: a worker killed between them left a registered run of a job still queued."""
        heartbeat_ttl = self.get_heartbeat_ttl(job)
        with self.connection.pipeline() as pipe:
            execution = Execution.create(job, heartbeat_ttl, pipeline=pipe, worker_name=self.name)
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            self.heartbeat(heartbeat_ttl, pipeline=pipe)
            job.heartbeat(utcnow(), heartbeat_ttl, pipeline=pipe)
            job.prepare_for_execution(self.name, pipeline=pipe)
            pipe.persist(job.key)
            pipe.lrem(queue.intermediate_queue_key, 1, job.id)
            pipe.execute()
        self.executions[execution.id] = execution
        return execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """Done by `start`, in the same round trip as registering the run."""

    def _finalize_success(self, job: Job, queue: Queue, execution: Execution, return_value: object) -> None:
        """RQ's, in one MULTI/EXEC for dlrq's own jobs, which have no callbacks, dependents, repeats
        or webhooks: RQ heartbeats the job, WATCHes and reads its dependents first (three more round
        trips a job). The job's last heartbeat is written with it, as finished."""
        if job.func_name not in OWN_JOBS:
            super()._finalize_success(job, queue, execution, return_value)
            return
        job.ended_at = job.last_heartbeat = utcnow()
        job._result = return_value
        result_ttl = job.get_result_ttl(self.default_result_ttl)
        with self.connection.pipeline() as pipe:
            self.increment_successful_job_count(pipeline=pipe)
            self.increment_total_working_time(job.ended_at - job.started_at, pipe)
            if result_ttl != 0:
                job._handle_success(result_ttl, pipeline=pipe, worker_name=self.name, execution_id=execution.id,
                                    execution_started_at=execution.created_at, execution_ended_at=job.ended_at)
                job.cleanup(result_ttl, pipeline=pipe, remove_from_queue=False)
            else:
                # Gone at once, in the same MULTI: RQ's own delete would first read the job's status and
                # look it up in each registry, when it can only be in the started one (cleaned below).
                pipe.delete(job.key, job.dependents_key, job.dependencies_key)
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            pipe.execute()
        job._status = JobStatus.FINISHED

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        with current.using(self.settings):
            return super().perform_job(job, queue, execution)

    def _finalize_failure(self, job: Job, queue: Queue, execution: Execution, exc_info: tuple) -> None:  # type: ignore[override]
        """A job cut off by Redis has not failed: it must not spend a retry step, nor land in the failed registry."""
        if is_transient(exc_info[1]):
            raise CutShort(str(exc_info[1])) from exc_info[1]
        super()._finalize_failure(job, queue, execution, exc_info)

    def execute_job(self, job: Job, queue: Queue) -> None:
        if cut_short(job) or (job.retries_left is not None and job.retries_left < len(job.retry_intervals or ())):
            forget_dead_executions(job)
        try:
            execution = self.start(job, queue)
        except redis.RedisError as exc:
            if not is_transient(exc):
                raise
            # Taken (in the intermediate list) but not started: back to the front once Redis is.
            if self.health.wait(exc):
                claim_and_requeue(job, queue, queue.intermediate_queue_key, HELD_IN_LIST, job.id)
            return
        try:
            self.perform_job(job, queue, execution)
        except CutShort as exc:
            # Stopping instead: its execution expires, and a worker runs it again then.
            if self.health.wait(exc.__cause__ or exc):
                with self.connection.pipeline() as pipe:
                    self.cleanup_execution(job, pipe, execution)
                    requeue_now(job, queue, pipe)
                    pipe.execute()
                log.warning("job %s was cut off by Redis: running it again", job.id)

    def run_maintenance_tasks(self) -> None:
        problem = self.health.problem()
        if problem is not None and not self.health.wait(problem):
            return
        self.register_again_if_forgotten()
        release_dead_scheduler_locks(self.connection, [q.name for q in self.queues], datetime.now(timezone.utc),
                                     self.name)
        # Before RQ's clean-up, which would fail an abandoned job (or spend one of its retries).
        rescue(self.queues, set(self.executions))
        super().run_maintenance_tasks()
        if self.sweeping is None:  # a burst worker sweeps here; a lasting one in its own thread
            sweep(self.connection, self.queues[0], self.settings, time.time(), self.name)

    def register_again_if_forgotten(self) -> None:
        """A worker that Redis no longer lists (its data was flushed, or restored from an older copy)
        registers again, so that monitoring does not count it out."""
        if self.birth_date is None or self.connection.sismember(REDIS_WORKER_KEYS, self.key):
            return  # not started yet, or listed
        with self.connection.pipeline() as pipe:
            pipe.hset(self.key, mapping=self.serialize())
            worker_registration.register(self, pipe)
            pipe.expire(self.key, self.worker_ttl + 60)
            pipe.execute()
        log.warning("worker %s was not listed in Redis (flushed, or restored from an older copy?): "
                    "registered again", self.name)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return int(job.timeout or 180) + ABANDON_MARGIN


def build_worker(settings: Settings, name: str | None = None, connection: redis.Redis | None = None) -> BatchWorker:
    """Receipt batches first, then handler calls: a slow handler must not hold receipts up for long.

    RQ asks Redis for the worker's address here already: it must answer."""
    connection = connection or client(settings)
    queues = [TakeThroughIntermediate(n, connection=connection, serializer=JSONSerializer) for n in settings.queues]
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
    worker.health = RedisHealth(connection, lambda: worker._stop_requested, settings.effective_redis_url)
    return worker


class Stop:
    """SIGTERM or Ctrl-C before the worker exists (waiting for Redis at start-up)."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._request)

    def _request(self, signum: int, frame: object) -> None:
        self.requested = True


def run_worker(settings: Settings, burst: bool = False, name: str | None = None) -> bool:
    """Work until stopped; Redis failing at start-up, or in a way RQ's own code does not survive, is waited out."""
    # RQ logs two lines per job at INFO: far too many at thousands of batches a minute.
    rq_level = "DEBUG" if settings.log_level.upper() == "DEBUG" else "WARNING"
    logging.getLogger("rq.worker").setLevel(rq_level)
    stop = Stop()
    connection = client(settings)
    starting = RedisHealth(connection, lambda: stop.requested, settings.effective_redis_url)
    worker: BatchWorker | None = None
    while worker is None:
        if not starting.wait():
            return False
        try:
            worker = build_worker(settings, name, connection)
        except redis.RedisError as exc:
            if not is_transient(exc):
                raise
    worker._install_signal_handlers()
    worker._stop_requested = stop.requested
    while True:
        try:
            return worker.work(burst=burst, logging_level=rq_level)
        except redis.RedisError as exc:
            if not is_transient(exc):
                raise  # with its traceback, and exit status 1 for the supervisor, never a silent stop
            if not worker.health.wait(exc):
                return False
