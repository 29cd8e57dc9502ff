"""A sick Redis must never cost an acknowledged receipt: evicting, refusing writes, unreachable,
holding a corrupted record, or losing a worker mid-batch (cases 1, 3, 4 and 11 of the hardening
issue; the full disk, case 2, is in test_hostile_disk.py)."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import time

import pytest
import redis
from rq import Queue, Retry
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer
from starlette.testclient import TestClient

from dlrq.cli.embedded import EmbeddedServer
from dlrq.core import connect, keys
from dlrq.core.receipt import Receipt, utc_now_iso
from dlrq.core.records import load_part
from dlrq.core.settings import Settings
from ingest.api import create_api
from ingest.app import create_app
from ingest.enqueue import BatchEnqueuer
from tests.support.apps import ingest_and_api
from tests.support.processes import dlrq, dlrq_env, eventually, spawn
from tests.support.queues import drain, queue_of
from tests.support.receipts import receipt
from workers.recovery import abandoned

pytestmark = [pytest.mark.integration]
PATH = "/webhooks/delivery-receipt"


def post(settings: Settings, receipts: list[dict]) -> list[int]:
    with TestClient(create_app(settings)) as c:
        return [c.post(PATH, json=params).status_code for params in receipts]


def history(r: redis.Redis, part_id: str) -> list[str]:
    raw = r.get(keys.part(part_id))
    return [] if raw is None else [e["status"] for e in load_part(raw)["history"]]


def enqueue_one_batch(settings: Settings, receipts: list[dict]) -> None:
    """As the ingest stores them, in a single batch."""

    async def enqueue() -> None:
        client = connect.async_client(settings)
        await BatchEnqueuer(client, settings.queue, settings.job_timeout)([Receipt(p, utc_now_iso()) for p in receipts])
        await client.aclose()

    asyncio.run(enqueue())


class Worker:
    """`dlrq worker` as a process whose log the test reads."""

    def __init__(self, url: str, tmp_path, **extra: str) -> None:
        self.log_path = tmp_path / f"worker-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        env = dlrq_env(url, DLRQ_LOG_FORMAT="text", DLRQ_MAINTENANCE_INTERVAL="1", **extra)
        self.process = spawn("worker", env, stdout=self.log, stderr=self.log)

    def text(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout: float = 10) -> tuple[int, float]:
        """(exit status, seconds it took) after one SIGTERM."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.log.close()
        return code, time.monotonic() - started


# 1. Eviction ----------------------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru"])
def test_a_redis_that_may_evict_is_not_trusted_with_receipts(private_server, tmp_path, policy, caplog):
    r = redis.Redis.from_url(private_server.url)
    settings = Settings(redis_url=private_server.url)
    assert post(settings, [receipt("QUEUED", "delivered", 5)]) == [204]
    r.config_set("maxmemory", 64 * 1024 * 1024)
    r.config_set("maxmemory-policy", policy)
    with caplog.at_level(logging.ERROR, logger="dlrq.ingest"), ingest_and_api(settings) as (c, api):
        ready = c.get("/readyz")
        assert ready.status_code == 503 and policy in ready.json()["detail"]
        refused = c.post(PATH, json=receipt("EVICTABLE", "delivered", 5))
        assert refused.status_code == 503 and refused.headers["retry-after"], "not acknowledged: Vonage resends"
        metrics = api.get("/metrics").text
        assert f'dlrq_redis_may_evict{{policy="{policy}"}} 1.0' in metrics
    assert any("maxmemory-policy" in rec.getMessage() for rec in caplog.records if rec.levelno == logging.ERROR)
    stats = dlrq(dlrq_env(private_server.url), "stats", "--no-messages").stdout
    assert f"maxmemory-policy {policy}" in stats and "DANGER" in stats

    worker = Worker(private_server.url, tmp_path)
    try:
        eventually(lambda: "may evict acknowledged receipts" in worker.text(), 15, "the worker to say why it waits")
        time.sleep(1.5)
        assert worker.process.poll() is None and history(r, "QUEUED") == [], "it waits, applying nothing"
        assert worker.text().count("may evict") == 1, "said once, not at every look"
        r.config_set("maxmemory-policy", "noeviction")
        eventually(lambda: history(r, "QUEUED") == ["delivered"], 15, "the worker to resume by itself")
    finally:
        code, took = worker.stop()
    assert code == 0 and took < 5


# 3. Refused writes and an unreachable Redis: workers wait, never exit ------------------------

@pytest.mark.parametrize("refusal", ["NOREPLICAS", "OOM", "READONLY"])
def test_a_worker_waits_while_redis_refuses_writes_and_resumes_by_itself(private_server, tmp_path, refusal):
    r = redis.Redis.from_url(private_server.url)
    settings = Settings(redis_url=private_server.url)
    assert post(settings, [receipt(f"W-{refusal}", "delivered", 5)]) == [204]
    undo = {
        "NOREPLICAS": lambda: r.config_set("min-replicas-to-write", 0),
        "OOM": lambda: r.config_set("maxmemory", 0),
        "READONLY": lambda: r.execute_command("REPLICAOF", "NO", "ONE"),
    }[refusal]
    if refusal == "NOREPLICAS":
        r.config_set("min-replicas-to-write", 1)
    elif refusal == "OOM":
        r.config_set("maxmemory", 1)
    else:
        r.execute_command("REPLICAOF", "127.0.0.1", "1")  # a primary that never answers: a read-only replica
    said = {"NOREPLICAS": "enough good replicas", "OOM": "maxmemory", "READONLY": "read only"}[refusal]
    with pytest.raises(redis.ResponseError, match=said):
        r.set("probe", "x")
    worker = Worker(private_server.url, tmp_path)
    try:
        eventually(lambda: "Redis refuses writes" in worker.text(), 15, "the worker to say why it waits")
        time.sleep(2)
        assert worker.process.poll() is None, f"the worker exited: {worker.text()}"
        assert worker.text().count("refuses writes") == 1, worker.text()
        undo()
        eventually(lambda: history(r, f"W-{refusal}") == ["delivered"], 15, "the worker to resume by itself")
        assert "resuming" in worker.text()
    finally:
        undo()
        code, took = worker.stop()
    assert code == 0 and took < 5


def test_a_worker_started_before_redis_waits_for_it_and_stops_on_the_first_sigterm(tmp_path):
    server = EmbeddedServer(tmp_path / "late")  # its address is known, it is not running yet
    worker = Worker(server.url, tmp_path)
    try:
        eventually(lambda: "Redis unreachable" in worker.text(), 15, "the worker to say why it waits")
        time.sleep(1.5)
        assert worker.process.poll() is None and worker.text().count("unreachable") == 1, worker.text()
        server.start()
        settings = Settings(redis_url=server.url)
        assert post(settings, [receipt("LATE", "delivered", 5)]) == [204]
        r = redis.Redis.from_url(server.url)
        eventually(lambda: history(r, "LATE") == ["delivered"], 15, "the worker to apply once Redis is up")
        server.stop()
        eventually(lambda: worker.text().count("unreachable") == 2, 15, "the worker to notice Redis is gone again")
    finally:
        code, took = worker.stop()
        server.stop()
    assert code == 0 and took < 3, f"one SIGTERM stops a worker waiting for Redis (took {took:.1f} s)"


# 4. A corrupted part record --------------------------------------------------------------------

def test_a_corrupted_part_record_is_set_aside_and_the_rest_of_the_batch_applies(settings, r):
    r.set(keys.part("NOTJSON"), b"{not json")
    r.set(keys.part("NUMBER"), b"5")
    r.hset(keys.part("HASH"), "a", "b")
    batch = [receipt("GOOD1", "delivered", 5), receipt("NOTJSON", "delivered", 5), receipt("NUMBER", "failed", 5, "2"),
             receipt("HASH", "delivered", 5), receipt("GOOD2", "accepted", 1), receipt("GOOD2", "delivered", 5)]
    enqueue_one_batch(settings, batch)
    with TestClient(create_api(settings)) as c:
        drain(settings)
        assert history(r, "GOOD1") == ["delivered"] and history(r, "GOOD2") == ["accepted", "delivered"]
        assert r.get(keys.part("NOTJSON")) == b"{not json", "a bad record is never overwritten"
        view = c.get("/messages/NOTJSON")
        assert view.status_code == 200 and "not valid JSON" in view.json()["parts"][0]["unreadable"]
        assert c.get("/messages/NUMBER").json()["parts"][0]["unreadable"]
        assert c.get("/messages/HASH").status_code == 404
    failed = FailedJobRegistry(queue=queue_of(r, settings))
    aside = {}
    for job_id in failed.get_job_ids():
        job = Job.fetch(job_id, connection=r, serializer=JSONSerializer)
        [record] = job.args[0]
        aside[record["params"]["messageId"]] = job.latest_result().exc_string
    assert sorted(aside) == ["HASH", "NOTJSON", "NUMBER"], "each receipt kept aside on its own"
    assert "not valid JSON" in aside["NOTJSON"] and "WRONGTYPE" in aside["HASH"]
    assert all("NOTJSON" not in reason for name, reason in aside.items() if name != "NOTJSON")
    assert all("requeue" in reason for reason in aside.values())
    r.delete(keys.part("NOTJSON"), keys.part("NUMBER"), keys.part("HASH"))
    assert "requeued 3" in dlrq(dlrq_env(settings.redis_url), "failed", "requeue", *failed.get_job_ids()).stdout
    drain(settings)
    assert history(r, "NOTJSON") == ["delivered"] and history(r, "NUMBER") == ["failed"]
    assert history(r, "HASH") == ["delivered"] and failed.count == 0


# 11. A killed worker's batch runs again at once ----------------------------------------------

def killed_while_running(url: str, tmp_path) -> tuple[Queue, Job, float]:
    """A job (3 s timeout, three retries) whose worker was SIGKILLed while running it, and when."""
    queue = queue_of(redis.Redis.from_url(url), Settings(redis_url=url))
    job = queue.enqueue("tests.support.probe.linger", {}, job_timeout=3, retry=Retry(max=3, interval=[60]))
    victim = Worker(url, tmp_path)
    try:
        eventually(lambda: "lingering" in victim.text(), 15, "the first worker to take the job")
    finally:
        victim.process.kill()
        victim.process.wait()
    return queue, job, time.monotonic()


def test_a_killed_workers_job_runs_again_at_once_without_spending_a_retry(private_server, tmp_path):
    _, job, killed = killed_while_running(private_server.url, tmp_path)
    rescuer = Worker(private_server.url, tmp_path)
    try:
        eventually(lambda: "lingering" in rescuer.text(), 20, "another worker to run the abandoned job")
        took = time.monotonic() - killed
        assert took < 3 + 5 + 1 + 3, f"{took:.1f} s: job timeout, margin, maintenance, start-up"
        job.refresh()
        assert job.retries_left == 3, "being abandoned is not a failure: no retry step spent"
        assert abandoned(job) == 1, "the job says it was abandoned once (dlrq_abandoned in its meta)"
    finally:
        rescuer.stop()


def test_a_killed_workers_job_is_put_back_while_every_live_worker_is_busy_with_a_long_one(private_server, tmp_path):
    """Looked for only between jobs, it would wait for the live worker's 30 s job to end."""
    queue, job, killed = killed_while_running(private_server.url, tmp_path)
    queue.enqueue("tests.support.probe.linger", {"seconds": 30}, job_timeout=60)
    busy = Worker(private_server.url, tmp_path)
    try:
        eventually(lambda: queue.get_job_ids() == [job.id], 20, "the killed worker's job to be back in its queue")
        took = time.monotonic() - killed
        assert busy.text().count("lingering") == 1, "the live worker was busy all along"
        assert took < 3 + 5 + 1 + 3, f"{took:.1f} s: job timeout, margin, maintenance, start-up"
    finally:
        busy.process.kill()
        busy.process.wait()


@pytest.mark.parametrize("held", ["intermediate list", "started registry"])
def test_a_job_put_back_while_redis_refuses_writes_is_never_left_in_no_list(private_server, held):
    """Putting a taken job back was two calls: take it out of where it was held, then enqueue it.
    At maxmemory the first (a removal) is allowed and the second refused, and the job was in no list
    at all: its acknowledged receipts lost (seen in a standalone fault run, seed 852, during the
    maxmemory fault). Now one atomic call: at maxmemory it still puts the job back."""
    from rq.registry import StartedJobRegistry

    from workers.queues import TakeThroughIntermediate
    from workers.recovery import HELD_IN_LIST, HELD_IN_REGISTRY, claim_and_requeue

    r = redis.Redis.from_url(private_server.url)
    queue = TakeThroughIntermediate("dlrq", connection=r, serializer=JSONSerializer)
    job = queue.enqueue("workers.batch.apply_batch", [], job_id="taken")
    assert r.lmove(queue.key, queue.intermediate_queue_key) == b"taken"
    registry = StartedJobRegistry(queue=queue)
    if held == "intermediate list":
        key, how, member = queue.intermediate_queue_key, HELD_IN_LIST, "taken"
    else:
        r.lrem(queue.intermediate_queue_key, 1, "taken")
        r.zadd(registry.key, {"taken:run": 1})
        key, how, member = registry.key, HELD_IN_REGISTRY, "taken:run"
    r.config_set("maxmemory", 1)
    try:
        with pytest.raises(redis.exceptions.ResponseError, match="maxmemory"):
            r.set("dlrq:probe", "x")  # writes are refused
        assert claim_and_requeue(job, queue, key, how, member)
        assert not claim_and_requeue(job, queue, key, how, member), "put back once"
    finally:
        r.config_set("maxmemory", 0)
    assert queue.get_job_ids() == ["taken"] and r.llen(queue.intermediate_queue_key) == 0
    assert registry.get_job_ids(cleanup=False) == []
    assert Job.fetch("taken", connection=r, serializer=JSONSerializer).get_status() == "queued"
