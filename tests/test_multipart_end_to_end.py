"""2,000 messages of 1, 2 and 3 parts through real processes: receipts in random order with
resends, registrations before, among and after them; every message ends as the contract says."""

from __future__ import annotations

import json
import os
import random
import signal
import time

import pytest
import redis

from dlrq.core.calls import run
from dlrq.core.receipt import Receipt
from dlrq.core.settings import Settings
from dlrq.core.store import read_message
from tests.support.bulk import message_views, run_all
from tests.support.oracle import contract_status
from tests.support.processes import dlrq, dlrq_env, spawn
from tests.support.queues import wait_drained
from tests.support.receipts import receipt
from tests.support.sends import send
from workers.batch import apply

from .test_end_to_end import PATH

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def build(n: int, seed: int) -> tuple[list[dict], list[dict], dict[str, str]]:
    """(sends, receipts, expected message status by logical id), by construction."""
    rng = random.Random(seed)
    sends, receipts, expected = [], [], {}
    for m in range(n):
        ids = [f"MP{seed}{m:05d}{p}" for p in range(rng.choice([1, 2, 3]))]
        send_statuses = ["0" if rng.random() > 0.02 else "1" for _ in ids]
        send_statuses[0] = "0"  # the logical id is a submitted part's
        statuses: list[str | None] = []
        for part_id, sent in zip(ids, send_statuses):
            if sent != "0":
                statuses.append("failed")
                continue
            chain = [receipt(part_id, "accepted", 1)] if rng.random() < 0.5 else []
            final = rng.choices(["delivered", "failed", "expired", "rejected", "unknown", None], [85, 4, 2, 1, 4, 4])[0]
            if final:
                code = "0" if final == "delivered" else rng.choice(["1", "2", "3", "8"])
                chain.append(receipt(part_id, final, 5, code))
            statuses.append(final or ("accepted" if chain else None))
            receipts.extend(chain)
        sends.append(send(ids, send_statuses))
        expected[ids[0]] = contract_status(statuses)
    return sends, receipts, expected


def post_all(base: str, requests: list[tuple[str, dict]]) -> list[int]:
    return [status for status, _ in run_all(base, [("POST", path, {"json": body}) for path, body in requests])]


def test_two_thousand_messages_end_as_the_contract_says(redis_url, ingest_server, api_server):
    sends, receipts, expected = build(2_000, seed=7)
    rng = random.Random(8)
    resends = [dict(r) for r in rng.choices(receipts, k=len(receipts) // 5)]
    rng.shuffle(sends)
    early, among, late = sends[:700], sends[700:1300], sends[1300:]
    middle = [(PATH, r) for r in receipts + resends] + [("/messages", s) for s in among]
    rng.shuffle(middle)

    codes = post_all(ingest_server, [("/messages", s) for s in early])
    codes += post_all(ingest_server, middle)
    worker = spawn("worker", dlrq_env(redis_url))  # applying while the late registrations come in
    try:
        codes += post_all(ingest_server, [("/messages", s) for s in late])
        assert sorted(set(codes)) == [201, 204]
        assert codes.count(201) == 2_000 and codes.count(204) == len(receipts) + len(resends)
        wait_drained(redis.Redis.from_url(redis_url), Settings(redis_url=redis_url), timeout=120)
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    views = message_views(api_server, list(expected))
    wrong = {i: (views[i]["status"], want) for i, want in expected.items() if views[i]["status"] != want}
    assert not wrong, f"{len(wrong)} messages differ, e.g. {list(wrong.items())[:5]}"
    assert {v["status"] for v in views.values()} == {"delivered", "failed", "unknown", "pending"}
    assert all(v["registered"] and v["parts_expected"] == len(v["parts"]) for v in views.values())
    for view in views.values():
        for part in view["parts"]:
            history = [(h["status"], h["err_code"], h["message_timestamp"]) for h in part["history"]]
            assert len(history) == len(set(history)), "a resend was kept twice"


def test_receipt_missing_survives_a_worker_restart_and_is_raised_once(redis_url, r):
    env = dlrq_env(redis_url, DLRQ_MAINTENANCE_INTERVAL="1", DLRQ_RECEIPT_TIMEOUT="3")
    dlrq(env, "register", "-", input=json.dumps(send(["SILENT0", "SILENT1"])))
    apply(r, [Receipt(receipt("SILENT0", "delivered", 5), "t")], Settings())

    first = spawn("worker", env)
    time.sleep(1)
    os.killpg(first.pid, signal.SIGKILL)  # gone before the deadline, with the scheduler it forked
    first.wait()
    second = spawn("worker", env)
    try:
        deadline = time.monotonic() + 30
        while not run(r, read_message("SILENT0")).alerts:
            assert time.monotonic() < deadline, "receipt_missing never raised"
            time.sleep(0.2)
        time.sleep(3)  # three more sweeps
    finally:
        second.terminate()
        second.wait(timeout=30)
    alerts = run(r, read_message("SILENT0")).alerts
    assert [(a["kind"], a["part"]) for a in alerts] == [("receipt_missing", "SILENT1")]
