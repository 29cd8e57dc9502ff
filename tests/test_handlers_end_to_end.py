"""Retry and alert handlers with real processes: a fake SMS API, a webhook receiver that checks
signatures, and a dotted-path handler; every event reaches every handler once, resends none."""

from __future__ import annotations

import json
import time
from collections import Counter

import httpx
import pytest
import redis

from tests.support.probe import CALLS
from tests.support.processes import dlrq_env, eventually, free_port, spawn, stop, wait_http
from tests.support.receipts import receipt
from tests.support.receivers import FakeSmsApi, WebhookReceiver
from tests.support.sends import send

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PATH = "/webhooks/delivery-receipt"
SECRET = "webhook-secret"


@pytest.fixture
def stack(redis_url):
    """ingest, api and worker with every handler kind configured, and the two fake servers."""
    sms, hook = FakeSmsApi(), WebhookReceiver(SECRET)
    port, api_port = free_port(), free_port()
    env = dlrq_env(
        redis_url,
        DLRQ_PORT=str(port),
        DLRQ_API_PORT=str(api_port),
        DLRQ_MAINTENANCE_INTERVAL="1",
        DLRQ_RETRY_BACKOFF="1",
        DLRQ_RETRY_HANDLERS="vonage,tests.support.probe:record",
        DLRQ_ALERT_HANDLERS="webhook,tests.support.probe:record",
        DLRQ_WEBHOOK_URL=hook.url,
        DLRQ_WEBHOOK_SECRET=SECRET,
        DLRQ_VONAGE_API_KEY="test-key",
        DLRQ_VONAGE_API_SECRET="test-secret",
        DLRQ_VONAGE_BASE_URL=sms.url,
        DLRQ_FAILURE_RATE_MIN_VOLUME="10",
        DLRQ_FAILURE_RATE_THRESHOLD="0.5",
    )
    procs = [spawn("ingest", env), spawn("api", env), spawn("worker", env)]
    base, api_base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{api_port}"
    try:
        wait_http(f"{base}/healthz")
        wait_http(f"{api_base}/healthz")
        with httpx.Client(base_url=base, timeout=10) as client, httpx.Client(base_url=api_base, timeout=10) as api:
            yield client, api, sms, hook, redis.Redis.from_url(redis_url)
    finally:
        stop(procs)
        sms.close()
        hook.close()


def probe_kinds(r: redis.Redis) -> Counter[str]:
    return Counter(json.loads(raw)["kind"] for raw in r.lrange(CALLS, 0, -1))


def test_retry_permanent_failure_exhaustion_and_failure_rate(stack):
    client, api, sms, hook, r = stack
    posted: list[dict] = []

    def post(params: dict) -> None:
        assert client.post(PATH, json=params).status_code == 204
        posted.append(params)

    def register(part_id: str) -> None:
        body = send([part_id], text="Your code is 1234", **{"from": "ACME"})
        assert client.post("/messages", json=body).status_code == 201

    def view(message_id: str) -> dict:
        return api.get(f"/messages/{message_id}").json()

    # A temporary failure (err-code 2) is resent after the backoff; its delivery ends the message.
    register("RETRY1")
    post(receipt("RETRY1", "failed", 5, "2"))
    eventually(lambda: len(sms.sends) == 1, what="the resend")
    assert {k: sms.sends[0][k] for k in ("to", "from", "text", "client-ref")} == {
        "to": "447700900000", "from": "ACME", "text": "Your code is 1234", "client-ref": "ref-1"}
    eventually(lambda: view("RETRY1")["attempts"] == 2, what="the second attempt")
    post(receipt("RESENT0001", "delivered", 9))
    eventually(lambda: view("RETRY1")["status"] == "delivered", what="delivery")
    assert view("RESENT0001")["id"] == "RETRY1"

    # A permanent failure (err-code 3): one alert to each alert handler.
    register("PERM1")
    post(receipt("PERM1", "failed", 5, "3"))
    eventually(lambda: hook.kinds["permanent_failure"] == 1, what="permanent_failure")

    # Three failing attempts: two resends, then retries_exhausted, once.
    register("EXH1")
    post(receipt("EXH1", "failed", 5, "2"))
    eventually(lambda: len(sms.sends) == 2, what="second resend")
    eventually(lambda: view("EXH1")["attempts"] == 2, what="attempt 2")
    post(receipt("RESENT0002", "failed", 5, "2"))
    eventually(lambda: len(sms.sends) == 3, what="third resend")
    eventually(lambda: view("EXH1")["attempts"] == 3, what="attempt 3")
    post(receipt("RESENT0003", "failed", 5, "2"))
    eventually(lambda: hook.kinds["retries_exhausted"] == 1, what="retries_exhausted")
    assert view("EXH1")["status"] == "failed"
    assert [a["kind"] for a in view("EXH1")["alerts"]] == ["retries_exhausted"]

    # A burst of failures on one network: one failure_rate alert, not one per receipt.
    for i in range(15):
        post(receipt(f"BURST{i:02d}", "failed", 5, "3", **{"network-code": "99999"}))
    eventually(lambda: hook.kinds["permanent_failure"] == 16, what="the burst's permanent failures")
    eventually(lambda: hook.kinds["failure_rate"] >= 1, what="failure_rate")

    time.sleep(3)  # a few more sweeps and scheduler turns: nothing else may arrive
    expected = Counter({"permanent_failure": 16, "retries_exhausted": 1, "failure_rate": 1})
    assert hook.kinds == expected
    assert all(n == 1 for n in hook.calls.values()), "an event reached the webhook twice"
    assert hook.bad_signatures == 0
    assert probe_kinds(r) == expected + Counter({"retry": 3})
    assert len(sms.sends) == 3

    # Every receipt again: no new handler call, no new send.
    for params in posted:
        assert client.post(PATH, json=params).status_code == 204
    eventually(lambda: r.llen("rq:queue:dlrq") == 0, what="the resends to be applied")
    time.sleep(3)
    assert hook.kinds == expected and probe_kinds(r) == expected + Counter({"retry": 3}) and len(sms.sends) == 3
