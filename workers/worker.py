"""The RQ worker that applies receipt batches."""

from __future__ import annotations

import logging

import redis
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer

from ingest.settings import Settings

# A batch runs in the worker's own process and cannot outlive its timeout, so a
# worker that has not been heard of for this long after it should have finished
# is dead, and its batch is handed to another worker.
ABANDON_MARGIN = 10


class BatchWorker(SimpleWorker):
    """Runs each batch in-process: forking per job would cost more than the whole batch."""

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return int(job.timeout or 180) + ABANDON_MARGIN


def build_worker(settings: Settings, name: str | None = None) -> BatchWorker:
    connection = redis.Redis.from_url(settings.effective_redis_url)
    queue = Queue(settings.queue, connection=connection, serializer=JSONSerializer)
    return BatchWorker(
        [queue],
        name=name,
        connection=connection,
        serializer=JSONSerializer,
        maintenance_interval=settings.maintenance_interval,
        # Maintenance runs between dequeues, so an idle worker must wake at least that often.
        worker_ttl=settings.maintenance_interval + 15,
    )


def run_worker(settings: Settings, burst: bool = False, name: str | None = None) -> bool:
    worker = build_worker(settings, name)
    # RQ logs two lines per job at INFO: far too many at thousands of batches a minute.
    rq_level = "DEBUG" if settings.log_level.upper() == "DEBUG" else "WARNING"
    logging.getLogger("rq.worker").setLevel(rq_level)
    return worker.work(burst=burst, with_scheduler=True, logging_level=rq_level)
