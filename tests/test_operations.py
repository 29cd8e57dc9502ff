"""What an operator sees: metrics, readiness, request ids in the logs of both sides."""

from __future__ import annotations

import json
import logging
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from dlrq.core.calls import run
from dlrq.core.registration import parse_send
from dlrq.core.settings import Settings
from dlrq.core.store import register
from ingest.app import create_app
from tests.support.apps import ingest_and_api
from tests.support.processes import dlrq, dlrq_env
from tests.support.queues import drain
from tests.support.receipts import receipt
from tests.support.sends import send

pytestmark = pytest.mark.integration
PATH = "/webhooks/delivery-receipt"


def scrape(client: TestClient, **headers: str) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and all((k, w) in ls for k, w in labels.items()))


def test_metrics_count_what_was_posted_and_what_the_workers_did(settings, r):
    statuses = ["accepted", "delivered", "failed", "DELIVRD"]
    posted = [receipt(f"m{i}", statuses[i % 4], second=i % 4, err_code="3" if i % 4 == 2 else "0") for i in range(40)]
    with ingest_and_api(settings) as (c, api):
        for params in posted:
            assert c.post(PATH, json=params).status_code == 204
        for params in posted[:5]:
            assert c.post(PATH, json=params).status_code == 204  # Vonage resending
        assert c.post(PATH, json={"status": "delivered"}).status_code == 400
        assert c.put(PATH).status_code == 405
        ingest_only = scrape(c)
        assert total(ingest_only, "dlrq_queue_depth") == 0, "the ingest serves its own figures only"
        before = {**ingest_only, **scrape(api)}
        assert total(before, "dlrq_receipts_accepted_total") == 45
        assert total(before, "dlrq_receipts_accepted_total", status="delivered") == 10 + 1
        assert total(before, "dlrq_receipts_accepted_total", status="other") == 10 + 1, "DELIVRD is not a status label"
        assert total(before, "dlrq_receipts_refused_total", reason="missing_field") == 1
        assert total(before, "dlrq_receipts_refused_total", reason="method_not_allowed") == 1
        assert total(before, "dlrq_ack_seconds_count") == 45
        assert total(before, "dlrq_batch_receipts_sum") == 45
        assert total(before, "dlrq_queue_depth", queue=settings.queue) >= 1
        assert total(before, "dlrq_queue_oldest_age_seconds", queue=settings.queue) > 0
        assert total(before, "dlrq_redis_up") == 1

        drain(settings)
        after = scrape(api)
    assert total(after, "dlrq_queue_depth", queue=settings.queue) == 0
    assert total(after, "dlrq_worker_receipts_total", outcome="new") == 40
    assert total(after, "dlrq_worker_receipts_total", outcome="resend") == 5
    # Each part's first recognised receipt changes its status; DELIVRD never does.
    assert total(after, "dlrq_worker_status_changes_total") == 30
    assert total(after, "dlrq_worker_status_changes_total", status="failed") == 10
    assert total(after, "dlrq_events_total", kind="permanent_failure") == 10
    # Half the final receipts of network 23410 failed: one failure_rate alert too.
    assert total(after, "dlrq_events_total", kind="failure_rate") == 1
    assert total(after, "dlrq_handler_calls_total", handler="log", outcome="ok") == 11, "the worker ran them"
    assert total(after, "dlrq_queue_depth", queue=settings.handler_queue) == 0


def test_status_changes_follow_the_contract_rules(settings, r):
    with ingest_and_api(settings) as (c, api):
        for params in [receipt("a", "delivered", 5), receipt("a", "accepted", 1), receipt("a", "buffered", 2),
                       receipt("b", "accepted", 1), receipt("b", "delivered", 5), receipt("b", "failed", 9, "3")]:
            assert c.post(PATH, json=params).status_code == 204
            drain(settings)  # one at a time: the order of arrival is the point
        samples = scrape(api)
    changes = {ls[0][1]: v for (n, ls), v in samples.items() if n == "dlrq_worker_status_changes_total"}
    # a: delivered, then late accepted/buffered change nothing; b: accepted → delivered → failed (later event).
    assert changes == {"delivered": 2, "accepted": 1, "failed": 1}


def test_metrics_need_the_token_when_set(redis_url, r):
    with ingest_and_api(Settings(redis_url=redis_url, api_token="t0ken")) as (ingest, api):
        assert ingest.get("/metrics").status_code == 401 and api.get("/metrics").status_code == 401
        assert total(scrape(api, authorization="Bearer t0ken"), "dlrq_redis_up") == 1
        assert "process_cpu_seconds_total" in str(scrape(ingest, authorization="Bearer t0ken"))


def test_readyz_follows_redis_without_a_restart(private_server):
    server = private_server
    settings = Settings(redis_url=server.url)
    try:
        with TestClient(create_app(settings)) as c:
            assert c.get("/readyz").status_code == 200
            server.stop()
            down = c.get("/readyz")
            assert down.status_code == 503 and down.json()["error"] == "storage_unavailable"
            assert total(scrape(c), "dlrq_redis_up") == 0, "/metrics still answers"
            assert c.get("/healthz").status_code == 200
            server.start()
            deadline = time.monotonic() + 10
            while c.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "ready again once Redis is back"
                time.sleep(0.1)
            assert c.post(PATH, json=receipt("m1", "delivered")).status_code == 204
    finally:
        server.stop()


def test_readyz_is_503_while_redis_refuses_writes(settings, r):
    with TestClient(create_app(settings)) as c:
        assert c.get("/readyz").status_code == 200
        used = r.info("memory")["used_memory"]
        r.config_set("maxmemory", used // 2)
        try:
            response = c.get("/readyz")
            assert response.status_code == 503 and "writes" in response.json()["detail"]
        finally:
            r.config_set("maxmemory", 0)
        assert c.get("/readyz").status_code == 200


def test_the_worker_logs_the_request_id_the_ingest_answered_with(settings, r, caplog):
    with TestClient(create_app(settings)) as c:
        with caplog.at_level(logging.DEBUG, logger="dlrq"):
            answers = [c.post(PATH, json=receipt(f"m{i}", "delivered")) for i in range(3)]
            ids = [a.headers["x-request-id"] for a in answers]
            assert len(set(ids)) == 3
            ingest_ids = [getattr(rec, "request_id", None) for rec in caplog.records if rec.name == "dlrq.ingest"]
            assert ingest_ids == ids
            caplog.clear()
            drain(settings)
    worker = {rec.request_id: rec.getMessage() for rec in caplog.records if hasattr(rec, "request_id")}
    assert set(worker) == set(ids)
    assert all("applied" in worker[i] and "447700900000" not in worker[i] for i in ids)


def test_redis_key_prefix_is_kept(settings, r):
    with TestClient(create_app(settings)) as c:
        c.post(PATH, json=receipt("m1", "delivered"))
        c.get("/readyz")
    drain(settings)
    foreign = [k for k in r.scan_iter() if not k.startswith((b"dlrq:", b"rq:"))]
    assert foreign == []


def test_dlrq_stats_shows_queues_rates_counters_and_messages(settings, r, redis_url):
    run(r, register(parse_send(send(["P1", "P2"])), Settings()))
    with TestClient(create_app(settings)) as c:
        for params in [receipt("P1", "delivered"), receipt("a", "delivered"), receipt("b", "failed", 1, "3"),
                       receipt("c", "accepted"), receipt("a", "delivered")]:
            assert c.post(PATH, json=params).status_code == 204
    drain(settings)
    env = dlrq_env(redis_url)
    out = dlrq(env, "stats", "--json", timeout=60).stdout
    stats = json.loads(out)
    assert stats["queues"][settings.queue] == {"waiting": 0, "oldest_age": 0.0, "failed": 0, "scheduled": 0,
                                               "workers": 0}
    assert stats["messages"] == {"pending": 2, "delivered": 1, "failed": 1}  # P1+P2 and c pending
    assert stats["counters"]["receipts:new"] == 4 and stats["counters"]["receipts:resend"] == 1
    assert stats["rates"]["last minute"]["accepted"] > 0
    text = dlrq(env, "stats", timeout=60).stdout
    assert "messages by status (4): delivered 1, failed 1, pending 2" in text
    rates = next(line for line in text.splitlines() if line.startswith("receipts/s:"))
    assert "acknowledged by the ingest" in rates and "accepted" not in rates, "not the word of a receipt's status"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "dlrq.example.com"])
def test_beyond_loopback_without_a_token_the_management_api_is_closed(redis_url, r, host, caplog):
    settings = Settings(redis_url=redis_url, host=host, api_host=host)
    with caplog.at_level(logging.WARNING), ingest_and_api(settings) as (c, api):
        for client, method, path in ((api, "GET", "/messages/X"), (api, "POST", "/messages"), (api, "GET", "/metrics"),
                                     (c, "POST", "/messages"), (c, "GET", "/metrics")):
            answer = client.request(method, path, json={})
            assert answer.status_code == 401 and "DLRQ_API_TOKEN" in answer.json()["detail"], (path, answer.text)
        for client in (c, api):
            assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
        assert c.post("/webhooks/delivery-receipt", json=receipt("OPEN", "delivered")).status_code == 204
    said = [rec.getMessage() for rec in caplog.records if "DLRQ_API_TOKEN" in rec.getMessage()]
    assert len(said) == 2 and all(host in line for line in said), "the ingest and the api say so once each"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_on_loopback_without_a_token_the_management_api_is_open(redis_url, r, host):
    with ingest_and_api(Settings(redis_url=redis_url, host=host, api_host=host)) as (c, api):
        assert c.get("/metrics").status_code == 200 and api.get("/metrics").status_code == 200


