"""Write a batch of receipts as one RQ job, in one round trip, without blocking the event loop.

The job's commands come from RQ itself (dlrq.core.jobs) and are run, with the record
and the throughput count, by one atomic Lua call through redis.asyncio: one reply to
read instead of one per command, which halves the CPU each write costs the ingest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from rq import Retry

from dlrq.core import keys
from dlrq.core.calls import Script, arun
from dlrq.core.jobs import FAILURE_TTL, Command, Recorder, flatten
from dlrq.core.receipt import Receipt
from dlrq.core.record import jsonl, record_commands

RUN_COMMANDS = Script.load(__package__, "run_commands", libraries=("commands",))

# First retry at once (a worker that died mid-batch), then back off while Redis or the code is unwell.
BATCH_RETRY_INTERVALS = [0, 1, 5, 15, 30, 60, 120, 300]
# A finished batch is deleted at once, in the worker's finishing MULTI: what it did is in the parts.
FINISHED_TTL = 0


@dataclass(frozen=True)
class Recording:
    """How much of the record of accepted receipts to keep."""

    max_batches: int
    max_age: int


class BatchEnqueuer:
    """Store a batch as one RQ job, and (with `recording`) append its receipts to the record, in one call."""

    def __init__(
        self, client: aioredis.Redis, queue_name: str, job_timeout: int, recording: Recording | None = None,
        replicas: int = 0, replica_timeout: float = 0.5,
    ) -> None:
        self._client = client
        self._replicas, self._replica_timeout = replicas, replica_timeout
        self._recorder = Recorder(queue_name)
        self._job_timeout = job_timeout
        self._recording = recording

    async def __call__(self, receipts: list[Receipt]) -> str:
        """Store the batch durably (on `replicas` replicas too); return the job id."""
        if not self._recorder.knows_server:
            self._recorder.set_server_version(str((await self._client.info("server"))["redis_version"]))
        records = [r.to_record() for r in receipts]
        job = self._recorder.queue.create_job(
            keys.BATCH_JOB,
            args=(records,),
            timeout=self._job_timeout,
            result_ttl=FINISHED_TTL,
            failure_ttl=FAILURE_TTL,
            description=f"dlrq batch of {len(receipts)} receipts",
            retry=Retry(max=len(BATCH_RETRY_INTERVALS), interval=BATCH_RETRY_INTERVALS),
        )
        now = time.time()
        commands = self._recorder.enqueue(job) + rate_commands(keys.RATE_ACCEPTED, len(receipts), now)
        if self._recording is not None:
            lines = jsonl(records)
            commands += record_commands(lines, self._recording.max_batches, self._recording.max_age, now)
        await arun(self._client, RUN_COMMANDS(keys=[], args=flatten(commands)), self._replicas, self._replica_timeout)
        return job.id


def rate_commands(field: str, n: int, now: float) -> list[Command]:
    """Count n receipts in this moment's throughput buckets (read by `dlrq stats` and the console)."""
    commands: list[Command] = []
    for key in keys.rates(now):
        commands += [("HINCRBY", key, field, n), ("EXPIRE", key, keys.RATE_TTL)]
    return commands
