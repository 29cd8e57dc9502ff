"""Real processes: `dlrq ingest`, `dlrq worker`, `dlrq up`, a real server, concurrent HTTP."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
import redis
from rq.registry import StartedJobRegistry

from dlrq.core import keys
from dlrq.core.settings import Settings
from tests.support.bulk import message_views, run_all
from tests.support.processes import dlrq_env, running_ingest, spawn
from tests.support.queues import queue_of, wait_drained
from tests.support.receipts import receipt

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PATH = "/webhooks/delivery-receipt"
FINALS = ["delivered", "expired", "failed", "rejected", "unknown"]
EXPECTED_MESSAGE = {"delivered": "delivered", "expired": "failed", "failed": "failed", "rejected": "failed", "unknown": "unknown"}


def scenario(n_receipts: int, seed: int) -> tuple[list[dict], dict[str, tuple[str, str, int]]]:
    """n distinct receipts, and for each message: (part status, message status, distinct receipts) by construction.

    Each message's chain is in rank order, so its last contract status word is the part's status.
    """
    rng = random.Random(seed)
    receipts: list[dict] = []
    expected = {}
    while len(receipts) < n_receipts:
        mid = f"E2E{seed:02d}{len(expected):010d}"
        chain = [receipt(mid, "accepted", 1)]
        if rng.random() < 0.5:
            chain.append(receipt(mid, "buffered", 2))
        if rng.random() < 0.1:
            chain.append(receipt(mid, "DELIVRD", 3))  # a word outside the contract: kept, never decides
        final = rng.choice(FINALS + [None])
        if final:
            chain.append(receipt(mid, final, 4, "0" if final == "delivered" else rng.choice(["1", "2", "3", "8"])))
        chain = chain[: n_receipts - len(receipts)]
        part = [r["status"] for r in chain if r["status"] != "DELIVRD"][-1]
        expected[mid] = (part, EXPECTED_MESSAGE.get(part, "pending"), len(chain))
        receipts.extend(chain)
    return receipts, expected


def post_concurrently(base: str, receipts: list[dict], concurrency: int = 64) -> list[int]:
    """Half as JSON, half as forms."""
    requests = [("POST", PATH, {"json": p} if len(p) % 2 else {"data": p}) for p in receipts]
    return [status for status, _ in run_all(base, requests, concurrency)]


def check_states(base: str, expected: dict[str, tuple[str, str, int]]) -> None:
    views = message_views(base, list(expected))
    for mid, (part_status, message_status, distinct) in expected.items():
        view = views[mid]
        [part] = view["parts"]
        history = [(h["status"], h["err_code"], h["message_timestamp"]) for h in part["history"]]
        assert len(history) == len(set(history)) == distinct, (mid, history)
        assert (part["status"], view["status"]) == (part_status, message_status), (mid, view)


def test_ten_thousand_concurrent_receipts_with_resends_in_shuffled_order(redis_url, ingest_server, api_server):
    receipts, expected = scenario(8_000, seed=1)
    rng = random.Random(2)
    resends = [dict(r) for r in rng.choices(receipts, k=2_000)]
    traffic = receipts + resends
    rng.shuffle(traffic)
    assert len(traffic) == 10_000 and len(resends) == 2_000

    statuses = post_concurrently(ingest_server, traffic)
    assert statuses.count(204) == 10_000

    settings = Settings(redis_url=redis_url)
    workers = [spawn("worker", dlrq_env(redis_url), "--burst") for _ in range(2)]
    for w in workers:
        assert w.wait(timeout=300) == 0
    wait_drained(redis.Redis.from_url(redis_url), settings, timeout=10)
    check_states(api_server, expected)


def test_worker_killed_mid_batch_another_finishes_it(redis_url, api_server):
    # A job's timeout is the one its ingest gave it: the workers' setting alone would not shorten it.
    short = {"DLRQ_JOB_TIMEOUT": "3", "DLRQ_MAINTENANCE_INTERVAL": "1"}
    env = dlrq_env(redis_url, **short)
    with running_ingest(redis_url, **short) as base:
        receipts, expected = scenario(10_000, seed=3)
        assert set(post_concurrently(base, receipts)) == {204}
        abandoned = kill_a_worker_mid_batch(redis_url, env)
        finish_the_abandoned_batch(redis_url, env, abandoned)
        assert len(redis.Redis.from_url(redis_url).keys(keys.part("E2E03*"))) == len(expected)
        check_states(api_server, expected)


def kill_a_worker_mid_batch(redis_url: str, env: dict[str, str]) -> list[str]:
    """The ids of the jobs it held."""
    client = redis.Redis.from_url(redis_url)
    started = StartedJobRegistry(queue=queue_of(client, Settings(redis_url=redis_url)))
    victim = spawn("worker", env)
    deadline = time.monotonic() + 30
    while started.count == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    abandoned = started.get_job_ids(cleanup=False)
    assert abandoned, "the worker was killed while holding a batch"
    return abandoned


def finish_the_abandoned_batch(redis_url: str, env: dict[str, str], abandoned: list[str]) -> None:
    """Another worker runs it: its 3 s timeout + 5 s + the next look, then 10 s for the finished job to expire."""
    client = redis.Redis.from_url(redis_url)
    rescuer = spawn("worker", env)
    try:
        deadline = time.monotonic() + 60
        while any(client.exists(f"rq:job:{job_id}") for job_id in abandoned):
            assert time.monotonic() < deadline, "the abandoned batch was run again within a minute"
            time.sleep(0.5)
        wait_drained(client, Settings(redis_url=redis_url), timeout=60)
    finally:
        os.killpg(rescuer.pid, signal.SIGTERM)
        rescuer.wait(timeout=20)
