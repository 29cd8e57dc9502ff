"""The standalone edition: one Valkey; workers, the ingest and Redis killed, Redis frozen, out of
memory and out of disk, the handler endpoint failing."""

from __future__ import annotations

import asyncio
import signal
import time

import redis
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import as_text, parse_composite_key

from .report import SLOW_KILL
from .run import QUEUES, Run


class StandaloneRun(Run):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if self.cluster.no_disk:
            self.report.skipped.append(f"disk full ({self.cluster.no_disk})")

    async def faults(self, t0: float) -> None:
        """Each fault in its own stretch of the run; workers are killed all along."""
        kills = asyncio.create_task(self._kill_workers(t0))
        await self._at(t0, 0.12)
        await self._handler_outage()
        await self._at(t0, 0.3)
        self.cluster.ingest.kill()
        await asyncio.sleep(2)
        self.cluster.ingest.start()
        self._recover("ingest SIGKILL + restart")
        await self._at(t0, 0.4)
        await asyncio.to_thread(self._memory_full, 4)
        self._recover("Redis maxmemory reached 4 s")
        await self._at(t0, 0.5)
        self.cluster.redis.kill()
        await asyncio.sleep(1)
        self.cluster.redis.start()
        self._recover("Redis SIGKILL + restart")
        await self._at(t0, 0.6)
        if self.cluster.disk is not None:
            await asyncio.to_thread(self.cluster.disk.fill)
            await asyncio.sleep(4)
            self.cluster.disk.empty()
            self._recover("disk full 4 s")
        await self._at(t0, 0.7)
        self.cluster.redis.signal(signal.SIGSTOP)
        await asyncio.sleep(10)
        self.cluster.redis.signal(signal.SIGCONT)
        self._recover("Redis unreachable 10 s")
        await kills

    def _memory_full(self, seconds: float) -> None:
        """Redis' memory limit just above what it uses: every write needing memory is refused (OOM)."""
        with self.cluster.client() as client:
            client.config_set("maxmemory", int(client.info("memory")["used_memory"]) + 64 * 1024)
            time.sleep(seconds)
            client.config_set("maxmemory", 0)

    async def _kill_workers(self, t0: float) -> None:
        while time.monotonic() < t0 + self.scale.duration - self.scale.worker_kill_every:
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * self.scale.worker_kill_every)
            worker = self.rng.choice(self.cluster.workers)
            held = await asyncio.to_thread(self._held_jobs, worker.pid)
            killed = time.monotonic()
            worker.kill()
            await asyncio.sleep(0.5)
            worker.start()
            self.recoveries.append(asyncio.create_task(self._jobs_done(held, killed)))

    def _held_jobs(self, pid: int) -> list[str]:
        """The batches the worker with this pid has started and not finished, and any batch taken from
        the queue and not started yet (whose taker is unknown). (A handler job's recovery shows in its
        event's delivery, and its RQ retry backoff would hide it here.)"""
        try:
            with self.cluster.client() as client:
                queue = Queue(QUEUES[0], connection=client, serializer=JSONSerializer)
                started = set(StartedJobRegistry(queue=queue).get_job_ids())
                running = [parse_composite_key(as_text(key))[0]
                           for worker in Worker.all(connection=client) if worker.pid == pid
                           for key in client.smembers(WORKER_EXECUTIONS_KEY_TEMPLATE.format(worker.name))]
                taken = [as_text(job_id) for job_id in client.lrange(f"{queue.key}:intermediate", 0, -1)]
                return [j for j in running if j in started] + [j for j in taken if j not in started]
        except redis.RedisError:
            return []

    async def _jobs_done(self, job_ids: list[str], since: float) -> None:
        """Recovery from a worker kill: until every job held at the kill has finished (run again if it was the dead one's)."""
        while time.monotonic() < self.vonage.give_up_at:
            try:
                if await asyncio.to_thread(self._all_finished, job_ids):
                    break
            except redis.RedisError:
                pass
            await asyncio.sleep(0.25)
        took = time.monotonic() - since
        self.report.recovery["worker SIGKILL (its batch finished by another)"].append(took)
        if took > SLOW_KILL:
            self.report.slow_kills.append((since - self.t0, took))

    def _all_finished(self, job_ids: list[str]) -> bool:
        with self.cluster.client() as client:
            for job_id in job_ids:
                try:
                    job = Job.fetch(job_id, connection=client, serializer=JSONSerializer)
                except NoSuchJobError:
                    continue  # expired after finishing (result_ttl)
                if job.get_status(refresh=False) != "finished":
                    return False
        return True

    async def _handler_outage(self) -> None:
        """The endpoint answers 500 for 4 s, then hangs past the handler's timeout for 4 s."""
        self.receiver.mode = "error"
        await asyncio.sleep(4)
        self.receiver.mode = "timeout"
        await asyncio.sleep(4)
        self.receiver.mode = "ok"
        healed = time.monotonic()
        self.recoveries.append(asyncio.create_task(self._handler_recovered(healed)))

    async def _handler_recovered(self, healed: float) -> None:
        """Until every event refused during the outage was delivered."""
        last = float("inf")
        while time.monotonic() < self.vonage.give_up_at:
            with self.receiver.lock:
                refused = list(self.receiver.first_refused)
                if all(e in self.receiver.first_delivered for e in refused):
                    last = max((self.receiver.first_delivered[e] for e in refused), default=healed)
                    break
            await asyncio.sleep(0.25)
        self.report.recovery["handler endpoint 500 / timeouts 8 s"].append(max(0.0, last - healed))

