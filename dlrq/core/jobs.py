"""RQ jobs as Redis commands: what RQ would write, run by dlrq's own atomic calls.

RQ has no asyncio API, and an enqueue costs it two MULTI/EXEC round trips. Rather than
copy its job format, RQ itself writes the job into a pipeline of a client that is never
connected; the commands it buffered are then run by one Lua call, alongside whatever else
must be written atomically with the job (the record, an event's guard). The job on the
server is byte for byte what `Queue.enqueue` would have written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import datetime

import redis
from redis.client import Pipeline
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from rq.serializers import JSONSerializer
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from . import keys

Command = tuple[object, ...]
# How long a job that ran out of retries waits in the failed registry (`dlrq failed`).
FAILURE_TTL = 30 * 86_400


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
        if at is None:
            return recorded(self._client, lambda pipe: self.queue.enqueue_job(job, pipeline=pipe))
        return recorded(self._client, lambda pipe: self.queue.schedule_job(job, at, pipeline=pipe))


def recorded(client: redis.Redis, write: Callable[[Pipeline], object]) -> list[Command]:
    """The commands `write` puts in a pipeline of `client`, which is never sent (they are run by a
    script of dlrq's, with what must be written atomically with them)."""
    recording = client.pipeline(transaction=False)
    write(recording)
    return [args for args, _ in recording.command_stack]


def handler_job_id(event_id: str, handler: str) -> str:
    """The job of one event's call to one handler: deterministic (an event raised twice enqueues no
    second call), and within RQ's job-id alphabet whatever the message ids hold."""
    digest = hashlib.sha256(f"{event_id}\n{handler}".encode()).hexdigest()[:32]
    return f"dlrq-{event_id.partition(':')[0]}-{digest}"


def called_by_another(connection: redis.Redis, event_id: str, handlers: Iterable[str], handler: str) -> bool:
    """Whether another of the event's handlers was called for it already (a marker that says it was
    made, not superseded): then this one is called too, whatever became of the message since."""
    markers = [keys.delivered(handler_job_id(event_id, h)) for h in handlers if h != handler]
    moot = keys.SUPERSEDED.encode()
    return bool(markers) and any(m is not None and not m.startswith(moot) for m in connection.mget(markers))


def flatten(commands: Iterable[Command]) -> list[object]:
    """The argument list the command-running scripts read: each command's length, then the command."""
    flat: list[object] = []
    for command in commands:
        flat.append(len(command))
        flat.extend(command)
    return flat


class QueueKeys:
    """RQ's key names for one queue, taken from RQ (never connected: names only)."""

    def __init__(self, name: str) -> None:
        offline = redis.Redis()
        self.name = name
        self.queue = Queue(name, connection=offline, serializer=JSONSerializer).key
        self.failed = FailedJobRegistry(name, connection=offline).key
        self.scheduled = ScheduledJobRegistry(name, connection=offline).key
        self.workers = WORKERS_BY_QUEUE_KEY % name

    @staticmethod
    def job(job_id: str) -> str:
        return f"{Queue.job_class.redis_job_namespace_prefix}{job_id}"
