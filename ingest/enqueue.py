"""Write a batch of receipts as one RQ job, in one round trip, without blocking the event loop.

RQ has no asyncio API. Rather than copy its job format, RQ itself writes the
job into a pipeline of a Redis client that is never connected; the commands
it buffered are then run atomically by one Lua call through redis.asyncio.
The job on the server is byte for byte what `Queue.enqueue` would have written.
A Lua call rather than MULTI/EXEC: one reply to read instead of one per command,
which halves the CPU each write costs the ingest.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files

import redis
import redis.asyncio as aioredis
from rq import Queue, Retry
from rq.job import Job
from rq.serializers import JSONSerializer

from . import keys
from .receipt import Receipt
from .record import Command, jsonl, record_commands

RUN_COMMANDS = files(__package__).joinpath("lua", "run_commands.lua").read_bytes()

BATCH_JOB = "workers.batch.apply_batch"
# First retry at once (a worker that died mid-batch), then back off while Redis or the code is unwell.
BATCH_RETRY_INTERVALS = [0, 1, 5, 15, 30, 60, 120, 300]
FAILURE_TTL = 30 * 86_400
# A finished batch is left to expire: deleting it at once costs RQ seven more round trips.
FINISHED_TTL = 10


class Recorder:
    """An RQ queue on a client that is never connected: what RQ would write, as commands."""

    def __init__(self, queue_name: str) -> None:
        self._client = redis.Redis()
        self.queue = Queue(queue_name, connection=self._client, serializer=JSONSerializer)

    @property
    def knows_server(self) -> bool:
        return self.queue.redis_server_version is not None

    def set_server_version(self, version: str) -> None:
        """RQ picks commands by server version; it would ask the server, which is not connected."""
        major, minor, patch, *_ = (version + ".0.0").split(".")
        self.queue.redis_server_version = (int(major), int(minor), int(patch))

    def enqueue(self, job: Job, at: datetime | None = None) -> list[Command]:
        recording = self._client.pipeline(transaction=False)
        if at is None:
            self.queue.enqueue_job(job, pipeline=recording)
        else:
            self.queue.schedule_job(job, at, pipeline=recording)
        return [args for args, _ in recording.command_stack]


@dataclass(frozen=True)
class Recording:
    """How much of the record of accepted receipts to keep."""

    max_batches: int
    max_age: int


class BatchEnqueuer:
    """Store a batch as one RQ job, and (with `recording`) append its receipts to the record, in one call."""

    def __init__(
        self, client: aioredis.Redis, queue_name: str, job_timeout: int, recording: Recording | None = None
    ) -> None:
        self._client = client
        self._recorder = Recorder(queue_name)
        self._job_timeout = job_timeout
        self._recording = recording
        self._run_commands = client.register_script(RUN_COMMANDS)

    async def __call__(self, receipts: list[Receipt]) -> str:
        """Store the batch durably; return the job id."""
        if not self._recorder.knows_server:
            self._recorder.set_server_version(str((await self._client.info("server"))["redis_version"]))
        records = [r.to_record() for r in receipts]
        job = self._recorder.queue.create_job(
            BATCH_JOB,
            args=(records,),
            timeout=self._job_timeout,
            result_ttl=FINISHED_TTL,
            failure_ttl=FAILURE_TTL,
            description=f"dlrq batch of {len(receipts)} receipts",
            retry=Retry(max=len(BATCH_RETRY_INTERVALS), interval=BATCH_RETRY_INTERVALS),
        )
        now = time.time()
        commands = self._recorder.enqueue(job) + rate_commands("accepted", len(receipts), now)
        if self._recording is not None:
            lines = jsonl(records)
            commands += record_commands(lines, self._recording.max_batches, self._recording.max_age, now)
        await self._run_commands(args=flatten(commands))
        return job.id


def rate_commands(field: str, n: int, now: float) -> list[Command]:
    """Count n receipts in this moment's throughput bucket (read by `dlrq stats`)."""
    key = keys.rate(int(now // keys.RATE_BUCKET))
    return [("HINCRBY", key, field, n), ("EXPIRE", key, keys.RATE_TTL)]


def flatten(commands: Iterable[Command]) -> list[object]:
    """The argument list run_commands.lua reads: each command's length, then the command."""
    flat: list[object] = []
    for command in commands:
        flat.append(len(command))
        flat.extend(command)
    return flat
