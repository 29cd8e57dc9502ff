"""Write a batch of receipts as one RQ job, in one round trip, without blocking the event loop.

RQ has no asyncio API. Rather than copy its job format, RQ itself writes the
job into a pipeline of a Redis client that is never connected; the commands
it buffered are then sent as one MULTI/EXEC through redis.asyncio. The job on
the server is byte for byte what `Queue.enqueue` would have written.
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from .receipt import Receipt

BATCH_JOB = "workers.batch.apply_batch"
# First retry at once (a worker that died mid-batch), then back off while Redis or the code is unwell.
BATCH_RETRY_INTERVALS = [0, 1, 5, 15, 30, 60, 120, 300]
FAILURE_TTL = 30 * 86_400


class BatchEnqueuer:
    def __init__(self, client: aioredis.Redis, queue_name: str, job_timeout: int) -> None:
        self._client = client
        self._recorder = redis.Redis()
        self._queue = Queue(queue_name, connection=self._recorder, serializer=JSONSerializer)
        self._job_timeout = job_timeout

    async def __call__(self, receipts: list[Receipt]) -> str:
        """Store the batch durably; return the job id."""
        if self._queue.redis_server_version is None:
            info = await self._client.info("server")
            major, minor, patch, *_ = (str(info["redis_version"]) + ".0.0").split(".")
            self._queue.redis_server_version = (int(major), int(minor), int(patch))
        recording = self._recorder.pipeline(transaction=False)
        job = self._queue.create_job(
            BATCH_JOB,
            args=([r.to_record() for r in receipts],),
            timeout=self._job_timeout,
            result_ttl=0,
            failure_ttl=FAILURE_TTL,
            description=f"dlrq batch of {len(receipts)} receipts",
            retry=Retry(max=len(BATCH_RETRY_INTERVALS), interval=BATCH_RETRY_INTERVALS),
        )
        self._queue.enqueue_job(job, pipeline=recording)
        async with self._client.pipeline(transaction=True) as pipe:
            for args, options in recording.command_stack:
                pipe.execute_command(*args, **options)
            await pipe.execute()
        return job.id
