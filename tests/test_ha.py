"""High availability: replicated acknowledgements, clients that follow a failover through the
sentinels, a scheduler that survives it, and several ingest processes on one port."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime, timedelta, timezone
from hashlib import sha1

import httpx
import pytest
from rq import Queue
from rq.serializers import JSONSerializer
from starlette.testclient import TestClient

from dlrq.core import connect, keys
from dlrq.core.calls import NotReplicated, Script, run
from dlrq.core.settings import Settings
from ingest.app import create_app
from tests.support.ha import Group
from tests.support.probe import CALLS
from tests.support.processes import dlrq, dlrq_env, eventually, free_port, spawn, wait_http
from tests.support.receipts import receipt
from tests.support.sender import Sender

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PATH = "/webhooks/delivery-receipt"


@pytest.fixture
def pair(tmp_path):
    """A primary and one replica, no sentinels."""
    group = Group(tmp_path, replicas=1, sentinels=0)
    group.start()
    yield group
    group.stop()


@pytest.fixture
def group(tmp_path):
    """A primary, two replicas and three sentinels that fail it over after 1 s of silence."""
    group = Group(tmp_path, replicas=2, sentinels=3, down_after_ms=1000)
    group.start()
    yield group
    group.stop()


def test_a_receipt_is_acknowledged_only_once_a_replica_has_it(pair):
    settings = Settings(redis_url=pair.primary.url, ack_replicas=1, ack_replica_timeout=0.3)
    [replica] = pair.replicas
    with TestClient(create_app(settings)) as c:
        assert c.post(PATH, json=receipt("R1", "delivered", 5)).status_code == 204
        assert c.get("/readyz").status_code == 200
        replica.signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            refused = c.post(PATH, json=receipt("R2", "delivered", 5))
            took = time.monotonic() - started
            assert refused.status_code == 503 and refused.headers["retry-after"]
            assert took < settings.store_timeout + 0.5
            registering = c.post("/messages", json={"messages": [{"message-id": "R3", "status": "0"}]})
            assert registering.status_code == 503
        finally:
            replica.signal(signal.SIGCONT)
        eventually(lambda: c.post(PATH, json=receipt("R4", "delivered", 5)).status_code == 204, 10,
                   "acknowledgements once the replica is back")
    # Without the setting, the same frozen replica changes nothing for the ingest.
    replica.signal(signal.SIGSTOP)
    try:
        with TestClient(create_app(Settings(redis_url=pair.primary.url))) as c:
            assert c.post(PATH, json=receipt("R5", "delivered", 5)).status_code == 204
    finally:
        replica.signal(signal.SIGCONT)


def test_a_write_counts_only_once_a_replica_confirms_it_even_when_its_script_is_sent_again(pair):
    """The script cache is not replicated: a promoted replica answers NOSCRIPT, the script is sent
    whole, and that second attempt is the write WAIT must confirm."""
    source = b"return redis.call('INCR', KEYS[1])"
    count = Script(source, sha1(source).hexdigest())
    [replica] = pair.replicas
    with pair.primary.client() as primary, replica.client() as copy:
        primary.script_flush()
        assert run(primary, count(["dlrq-test:count"], []), replicas=1, timeout=0.5) == 1
        assert copy.get("dlrq-test:count") == b"1"  # there before the call returned
        replica.signal(signal.SIGSTOP)
        primary.script_flush()
        try:
            with pytest.raises(NotReplicated, match="0 of 1 replicas"):
                run(primary, count(["dlrq-test:count"], []), replicas=1, timeout=0.3)
        finally:
            replica.signal(signal.SIGCONT)
        assert run(primary, count(["dlrq-test:count"], []), replicas=0) == 3


class Interrupted(Exception):
    pass


def interrupt(signum: int, frame: object) -> None:
    raise Interrupted


def test_a_command_cut_short_never_leaves_its_answer_to_the_next_one(tmp_path):
    """A job timeout (SIGALRM, as RQ's) interrupting a worker that waits for an answer: the next
    command through the sentinels must get its own answer, not the late one."""
    group = Group(tmp_path, replicas=0, sentinels=1, min_replicas_to_write=0)
    group.start()
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        client = connect.client(Settings(redis_sentinels=group.sentinel_addresses))
        client.set("dlrq-test:value", "mine")
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(Interrupted):
            client.blpop(["dlrq-test:empty"], timeout=1)  # answers nil after 1 s
        assert client.get("dlrq-test:value") == b"mine"
        time.sleep(1)
        assert client.get("dlrq-test:value") == b"mine"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        group.stop()


def test_every_part_follows_a_failover_through_the_sentinels_without_a_restart(group, tmp_path):
    env = dlrq_env(None, DLRQ_REDIS_SENTINELS=group.sentinel_addresses, DLRQ_ACK_REPLICAS="1",
                   DLRQ_LOG_FORMAT="text", DLRQ_MAINTENANCE_INTERVAL="1",
                   DLRQ_ALERT_HANDLERS="tests.support.probe:record", DLRQ_RETRY_HANDLERS="tests.support.probe:record",
                   DLRQ_RETRY_BACKOFF="4")
    port = free_port()
    logs = open(tmp_path / "dlrq.log", "wb")  # noqa: SIM115
    ingest = spawn("ingest", {**env, "DLRQ_PORT": str(port)}, stdout=logs, stderr=logs)
    worker = spawn("worker", env, stdout=logs, stderr=logs)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", timeout=30)
        sender = Sender(base)
        sender.send_all([receipt(f"BEFORE{i}", "delivered", 5) for i in range(200)])
        # A retry event due a few seconds from now: it must be raised through the failover.
        sender.send_all([receipt("TEMPFAIL", "failed", 5, err_code="2")])
        old = group.primary_port()
        group.node(old).kill()
        killed = time.monotonic()
        eventually(lambda: httpx.post(base + PATH, json=receipt("PROBE", "delivered", 5)).status_code == 204, 30,
                   "acknowledgements through the new primary")
        back_in = time.monotonic() - killed
        new = group.primary_port()
        assert new != old and back_in < 10, f"acknowledged again {back_in:.1f} s after the primary was killed"
        sender.send_all([receipt(f"AFTER{i}", "delivered", 5) for i in range(200)])
        client = group.node(new).client()
        eventually(lambda: all(client.exists(keys.part(f"{w}{i}")) for w in ("BEFORE", "AFTER") for i in range(200)),
                   30, "the worker to apply every receipt on the new primary")
        eventually(lambda: any(json.loads(c)["kind"] == "retry" for c in client.lrange(CALLS, 0, -1)), 30,
                   "the scheduled retry event to be delivered after the failover")
        shown = dlrq(env, "show", "AFTER1")
        assert json.loads(shown.stdout)["status"] == "delivered"
        assert ingest.poll() is None and worker.poll() is None, "nothing restarted"
    finally:
        for process in (ingest, worker):
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        logs.close()


def test_the_scheduler_enqueues_a_due_job_within_seconds_of_a_primary_change(group, tmp_path):
    settings = Settings(redis_sentinels=group.sentinel_addresses)
    client = connect.client(settings)
    queue = Queue("dlrq-handlers", connection=client, serializer=JSONSerializer)
    due = datetime.now(timezone.utc) + timedelta(seconds=6)
    job = queue.enqueue_at(due, "tests.support.probe.record", {"id": "scheduled", "kind": "probe"})
    client.execute_command("WAIT", 2, 1000)
    env = dlrq_env(None, DLRQ_REDIS_SENTINELS=group.sentinel_addresses, DLRQ_LOG_FORMAT="text")
    logs = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    worker = spawn("worker", env, stdout=logs, stderr=logs)
    try:
        time.sleep(2)  # its scheduler holds the lock on the first primary
        old = group.primary_port()
        group.node(old).kill()
        group.wait_new_primary(old)
        eventually(lambda: client.lrange(CALLS, 0, -1), 30, "the scheduled job to run")
        ran = datetime.now(timezone.utc)
        assert (ran - due).total_seconds() < 8, f"ran {(ran - due).total_seconds():.1f} s after it was due"
        assert json.loads(client.lrange(CALLS, 0, -1)[0])["id"] == "scheduled" and job.id
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        logs.close()


def test_several_ingest_processes_serve_one_port_each_with_its_own_group_commit(redis_url, r, tmp_path):
    port = free_port()
    env = dlrq_env(redis_url, DLRQ_PORT=str(port), DLRQ_BATCH_MAX_WAIT_MS="2")
    ingest = spawn("ingest", env, "--processes", "2")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz")
        sender = Sender(base, connections=16)
        sender.send_all([receipt(f"P{i}", "delivered", 5) for i in range(2000)])
        pids = set()
        for _ in range(50):
            pids.add(httpx.get(f"{base}/healthz").json()["process"])
        assert len(pids) == 2, "both processes answer on the one port"
    finally:
        ingest.send_signal(signal.SIGTERM)
        assert ingest.wait(30) == 0
    queue = Queue("dlrq", connection=r, serializer=JSONSerializer)
    stored = sorted(record["params"]["messageId"] for job in queue.get_jobs() for record in job.args[0])
    assert stored == sorted(f"P{i}" for i in range(2000)), "every acknowledged receipt stored, once"
    assert len(sender.acknowledged) == 2000
