"""Isolation: whatever one receipt, one forger or one reader does touches nothing else.

One test (or a few) per case the adversarial run found against 0.1's main; each failed there.
Real servers throughout: the suite's Valkey, and real ingest, api and worker processes where
timing or logs are the point.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import socket
import threading
import time
from datetime import datetime, timezone

import aiohttp
import httpx
import jwt
import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from rq import Retry
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.worker_registration import REDIS_WORKER_KEYS
from starlette.testclient import TestClient

from dlrq.core import analytics, keys
from dlrq.core.calls import run
from dlrq.core.receipt import Receipt, iso_from_epoch, utc_now_iso
from dlrq.core.registration import MAX_ATTEMPTS, parse_send
from dlrq.core.settings import Settings
from dlrq.core.store import read_message, register
from ingest.api import create_api
from ingest.app import create_app
from tests.support.apps import ingest_and_api
from tests.support.processes import Service, dlrq, dlrq_env, eventually
from tests.support.queues import drain, queue_of
from tests.support.receipts import receipt
from tests.support.sends import send
from workers.batch import NEW, RESEND, apply

pytestmark = pytest.mark.integration
PATH = "/webhooks/delivery-receipt"
STATUS_PATH = "/webhooks/message-status"
TOKEN = "isolation-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def view(api: TestClient, message_id: str) -> dict | None:
    answer = api.get(f"/messages/{message_id}")
    return answer.json() if answer.status_code == 200 else None


# 1. One receipt poisons its batch ------------------------------------------------------------

@pytest.mark.parametrize("price", ["Infinity", "NaN", "1e5000", "1e999999", "1e30", "-0.5", "1001"])
def test_a_price_the_worker_could_not_count_is_refused_at_the_door(settings, r, price):
    with TestClient(create_app(settings)) as ingest:
        answer = ingest.post(PATH, json=receipt("P1", "delivered", 5, price=price))
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "malformed_field" and "price" in answer.json()["detail"]
        assert ingest.post(PATH, json=receipt("P2", "delivered", 5, price="0.03330000")).status_code == 204
    assert queue_of(r, settings).count == 1, "nothing refused is stored"


def test_one_poison_receipt_never_holds_back_its_batch(settings, r):
    """A batch as an older ingest, or a replayed file, may have put on the queue: 15 genuine receipts
    and one the worker cannot apply. The 15 are applied, once; the poison is kept aside, alone."""
    legit = [receipt(f"LEGIT{i:02d}", "delivered", 5) for i in range(15)]
    poison = receipt("POISON", "delivered", 5, price="Infinity")
    records = [Receipt(p, utc_now_iso()).to_record() for p in [*legit[:7], poison, *legit[7:]]]
    batch = queue_of(r, settings).enqueue(keys.BATCH_JOB, records, retry=Retry(max=8, interval=[0]))
    drain(settings)
    assert batch.get_status(refresh=True) == "finished", "the batch is done: nothing to retry"
    failed = FailedJobRegistry(queue=queue_of(r, settings))
    assert failed.get_job_ids() == [f"{batch.id}-aside-7"]
    reason = Job.fetch(f"{batch.id}-aside-7", connection=r).latest_result().exc_string
    assert "price" in reason and "requeue" in reason
    with TestClient(create_api(settings)) as api:
        assert all(view(api, p["messageId"])["status"] == "delivered" for p in legit)
        total = api.get("/analytics", params={"by": "network"}).json()["total"]
        metrics = api.get("/metrics").text
    assert total["final"] == 15 and total["delivered"] == 15
    assert 'dlrq_worker_receipts_total{outcome="kept_aside"} 1.0' in metrics
    assert 'dlrq_worker_receipts_total{outcome="new"} 15.0' in metrics

    # Requeued as it is, it fails again on its own, and touches nothing else.
    assert "requeued 1" in dlrq(dlrq_env(settings.redis_url), "failed", "requeue", "--all").stdout
    drain(settings)
    assert failed.get_job_ids() == [f"{batch.id}-aside-7"], "back where it was, not nested in a new job"
    assert int(r.hget(keys.COUNTERS, keys.COUNT_NEW)) == 15 and int(r.hget(keys.COUNTERS, keys.COUNT_RESEND)) == 0


def test_a_count_that_would_overflow_costs_that_count_only(settings, r):
    """A sum Redis cannot add to (here the hour's cost, set near 2^63 by hand) makes Lua's HINCRBY fail:
    once after the part records were written, so that a retry took the receipts for resends."""
    hour_start = int(time.time()) // 3600 * 3600
    received = iso_from_epoch(hour_start + 1)
    hour = time.strftime(analytics.HOUR_FORMAT, time.gmtime(hour_start))
    r.hset(keys.analytics("network", hour), f"23410{analytics.SEPARATOR}{analytics.COST}", 2**63 - 10)
    batch = [Receipt(receipt(f"OVER{i:02d}", "delivered", 5), received) for i in range(16)]
    assert apply(r, batch, settings).outcomes == [NEW] * 16
    assert apply(r, batch, settings).outcomes == [RESEND] * 16, "applied once, then known"
    row = analytics.tally([r.hgetall(keys.analytics("network", hour))])["23410"]
    assert row.finals["delivered"] == 16, "the outcomes were counted"
    assert row.cost == 2**63 - 10, "the sum that could not take more is left as it was"
    assert int(r.hget(keys.COUNTERS, keys.COUNT_REFUSED_COUNTS)) >= 1


# 2. Forged receipts ------------------------------------------------------------------------

def test_a_flood_of_forged_receipts_cannot_crowd_out_the_genuine_outcome(settings, r):
    with ingest_and_api(settings) as (ingest, api):
        for i in range(100):
            forged = receipt("VICTIM", "accepted", 1, scts=f"{2001011300 + i}")
            assert ingest.post(PATH, json=forged).status_code == 204
        drain(settings)
        assert ingest.post(PATH, json=receipt("VICTIM", "delivered", 30)).status_code == 204
        drain(settings)
        assert view(api, "VICTIM")["status"] == "delivered", "the genuine receipt decided"
        for i in range(300):  # more noise: bounded, and still not deciding
            assert ingest.post(PATH, json=receipt("VICTIM", "buffered", 2, scts=f"{2001011000 + i}")).status_code == 204
        drain(settings)
        shown = view(api, "VICTIM")
    assert shown["status"] == "delivered"
    assert len(shown["parts"][0]["history"]) <= settings.part_max_receipts + 1
    assert int(r.hget(keys.COUNTERS, keys.COUNT_DROPPED)) >= 300 - settings.part_max_receipts


def test_a_receipt_from_the_far_future_is_refused_and_cannot_outrank_the_genuine_one(settings, r):
    now = time.time()
    with ingest_and_api(settings) as (ingest, api):
        for ahead in ("9999-12-31 23:59:59", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now + 86_460))):
            answer = ingest.post(PATH, json={**receipt("TARGET", "failed", 0, "6"), "message-timestamp": ahead})
            assert answer.status_code == 400 and "message-timestamp" in answer.json()["detail"]
        close = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now - 60))
        assert ingest.post(PATH, json={**receipt("TARGET", "delivered", 0), "message-timestamp": close}).status_code == 204
        drain(settings)
        assert view(api, "TARGET")["status"] == "delivered"


# 3. Readers do not stall the writer ----------------------------------------------------------

def test_spans_are_bounded_and_out_of_range_times_are_a_400(settings, r):
    settings = Settings(redis_url=settings.redis_url, api_token=TOKEN)
    with TestClient(create_api(settings)) as api:
        for since in ("-99999999999d", "-1000000000h", "99999-01-01", "not a time"):
            answer = api.get("/analytics", params={"since": since}, headers=AUTH)
            assert answer.status_code == 400 and answer.json()["error"] == "malformed_field", (since, answer.text)
        started = time.monotonic()
        answer = api.get("/analytics", params={"since": "-1000000h", "until": "2999-01-01T00:00:00Z"}, headers=AUTH)
        took = time.monotonic() - started
    assert answer.status_code == 200
    since, until = (analytics.parse_time(answer.json()[k], datetime.now(timezone.utc))
                    for k in ("since", "until"))
    assert (until - since).total_seconds() <= settings.analytics_retention + 3600, "clamped to the retention"
    assert until.timestamp() <= time.time() + 3600, "never the future"
    assert took < 5, f"a year-long query took {took:.1f} s"


def test_network_codes_and_err_codes_beyond_their_caps_count_as_other(settings, r):
    settings = Settings(redis_url=settings.redis_url, analytics_max_networks=50, analytics_max_err_codes=5)
    batch = [Receipt(receipt(f"NET{i:04d}", "failed", 5, str(100 + i % 20), **{"network-code": str(20000 + i)}),
                     utc_now_iso()) for i in range(400)]
    apply(r, batch, settings)
    with TestClient(create_api(settings)) as api:
        rows = {row["key"]: row for row in api.get("/analytics", params={"by": "network"}).json()["rows"]}
        codes = api.get("/analytics", params={"by": "err_code"}).json()
    assert len(rows) == 51 and rows["(other)"]["final"] == 350, "50 networks by name, the rest as (other)"
    assert sum(row["final"] for row in rows.values()) == 400, "nothing is lost from the totals"
    assert len(codes["rows"]) == 6 and codes["total"]["final"] == 400
    assert all(len(row["err_codes"]) <= 6 for row in rows.values())
    assert r.scard(keys.ANALYTICS_LABELS) <= 50, "the Prometheus series are bounded too"


@pytest.mark.slow
def test_the_webhook_answers_at_once_while_readers_run_the_heaviest_queries(redis_url, r, tmp_path):
    """32 connections of receipts against the ingest, while a client loops the console's networks
    page and a year-long analytics query on the api. On 0.1's main, where they shared the ingest's
    event loop, a receipt waited up to 22.7 s."""
    env = {"DLRQ_API_TOKEN": TOKEN, "DLRQ_MAINTENANCE_INTERVAL": "1"}
    with (Service("ingest", redis_url, tmp_path, **env) as ingest, Service("api", redis_url, tmp_path, **env) as api,
          Service("worker", redis_url, tmp_path, **env)):
        # 20,000 new network codes: the heaviest networks page there can be (the caps bound it).
        fill = [receipt(f"WIDE{i:05d}", "delivered", 5, **{"network-code": str(100000 + i)}) for i in range(20_000)]
        assert set(asyncio.run(_post_all(ingest.base, fill, 64))) == {204}
        eventually(lambda: queue_of(r, Settings(redis_url=redis_url)).count == 0, 120, "the fill to be applied")
        stop = threading.Event()
        readers = threading.Thread(target=_read_heavily, args=(api.base, stop))
        readers.start()
        try:
            time.sleep(1)
            latencies = asyncio.run(_latencies(ingest.base, seconds=6, connections=32))
        finally:
            stop.set()
            readers.join()
        assert readers.reads >= 2, "the readers ran meanwhile"  # type: ignore[attr-defined]
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)]
    print(f"webhook p99 {p99 * 1000:.1f} ms over {len(latencies)} receipts while readers ran")
    assert p99 < 0.25, f"p99 {p99 * 1000:.0f} ms"


async def _post_all(base: str, receipts: list[dict], concurrency: int) -> list[int]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=connector) as session:
        async def one(params: dict) -> int:
            async with session.post(PATH, json=params) as answer:
                return answer.status

        return await asyncio.gather(*(one(p) for p in receipts))


async def _latencies(base: str, seconds: float, connections: int) -> list[float]:
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=connections)) as session:
        async def loop(n: int) -> None:
            i = 0
            while time.monotonic() < deadline:
                started = time.perf_counter()
                async with session.post(PATH, json=receipt(f"LAT{n}-{i}", "delivered", 5)) as answer:
                    assert answer.status == 204
                latencies.append(time.perf_counter() - started)
                i += 1

        await asyncio.gather(*(loop(n) for n in range(connections)))
    return latencies


def _read_heavily(base: str, stop: threading.Event) -> None:
    me = threading.current_thread()
    me.reads = 0  # type: ignore[attr-defined]
    with httpx.Client(base_url=base, timeout=60, follow_redirects=True) as http:
        login = http.get("/console/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)
        assert http.post("/console/login", data={"csrf": csrf, "token": TOKEN}).status_code == 200
        while not stop.is_set():
            assert http.get("/console/networks").status_code == 200
            assert http.get("/analytics", params={"since": "-1000000h"}, headers=AUTH).status_code == 200
            me.reads += 2  # type: ignore[attr-defined]


# 4. The sweep keeps up ---------------------------------------------------------------------

@pytest.mark.slow
def test_the_sweep_evaluates_registrations_as_fast_as_they_arrive(redis_url, r, tmp_path):
    """20,000 registrations, half of them of messages whose failed receipt came first (each must raise
    permanent_failure): on 0.1's main, 1,000 were looked at every 15 s, so this took five minutes."""
    settings = Settings(redis_url=redis_url)
    messages = 20_000
    apply(r, [Receipt(receipt(f"SW{i:05d}", "failed", 5, "6"), utc_now_iso()) for i in range(0, messages, 2)],
          settings)
    for first in range(0, messages, 1000):
        with r.pipeline(transaction=False):
            for i in range(first, first + 1000):
                run(r, register(parse_send(send([f"SW{i:05d}"])), settings))
    last = time.monotonic()
    with Service("worker", redis_url, tmp_path):
        eventually(lambda: r.zcard(keys.EVALUATE) == 0, 60, "every registration to be evaluated", pause=0.2)
        took = time.monotonic() - last
        eventually(lambda: int(r.hget(keys.COUNTERS, keys.count_events("permanent_failure")) or 0) == messages // 2,
                   30, "every failed message's event")
    print(f"{messages} registrations evaluated {took:.1f} s after the last one")


# 5. A full Redis -----------------------------------------------------------------------------

@pytest.mark.slow
def test_at_the_memory_high_water_mark_the_ingest_refuses_and_the_workers_drain(private_server, tmp_path):
    """A flood into a small Redis: the ingest refuses (503, and /readyz says why) at the high-water mark,
    the workers shed the record to keep room and apply every acknowledged receipt, and each change of
    state is logged once, not hundreds of times."""
    url = private_server.url
    r = redis.Redis.from_url(url)
    r.config_set("maxmemory", 48 * 1024 * 1024)
    env = {"DLRQ_MAINTENANCE_INTERVAL": "1", "DLRQ_LOG_LEVEL": "INFO"}
    acknowledged: list[str] = []
    readiness: list[str] = []
    with Service("ingest", url, tmp_path, **env) as ingest, Service("worker", url, tmp_path, **env) as worker:
        answers = asyncio.run(_flood(ingest.base, acknowledged, readiness, seconds=25))
        assert answers[503] > 0, f"the high-water mark was never reached: {answers}"
        assert any("high-water" in detail for detail in readiness), "readiness said why"
        eventually(lambda: r.llen("rq:queue:dlrq") == 0, 120, "the workers to drain what was acknowledged")
        missing = [m for m in acknowledged if not r.exists(keys.part(m))]
        assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged receipts not applied"
        assert int(r.hget(keys.COUNTERS, keys.COUNT_RECORD_SHED) or 0) > 0, "the record was shed to make room"
        r.config_set("maxmemory", 0)
        eventually(lambda: httpx.get(f"{ingest.base}/readyz").status_code == 200, 15, "the ingest to take receipts")
        time.sleep(6)  # past the hold-down, so that the recovery is logged
        ingest_log, worker_log = ingest.text(), worker.text()
    print(f"flood: {answers}, {len(acknowledged)} acknowledged")
    assert ingest_log.count("high-water mark") + ingest_log.count("out of memory") <= 6, ingest_log[-3000:]
    assert ingest_log.count("trusted with receipts again") <= 6, ingest_log[-3000:]
    assert "shed the record" in worker_log
    assert "abandoned by a worker that died" not in worker_log, worker_log[-3000:]


async def _flood(base: str, acknowledged: list[str], readiness: list[str], seconds: float) -> dict[int, int]:
    answers = {204: 0, 503: 0}
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=40)) as session:
        async def loop(n: int) -> None:
            i = 0
            while time.monotonic() < deadline:
                message_id = f"FLOOD{n:02d}-{i:06d}"
                # Random, so that neither the compact part record nor the compressed record shrinks it.
                padding = {f"x-pad-{n}": base64.b64encode(os.urandom(450)).decode() for n in range(3)}
                params = receipt(message_id, "delivered", 5, **padding)
                async with session.post(PATH, json=params) as answer:
                    answers[answer.status] = answers.get(answer.status, 0) + 1
                    if answer.status == 204:
                        acknowledged.append(message_id)
                i += 1

        async def ready() -> None:
            while time.monotonic() < deadline:
                async with session.get("/readyz") as answer:
                    if answer.status == 503:
                        readiness.append((await answer.json())["detail"])
                await asyncio.sleep(0.25)

        await asyncio.gather(ready(), *(loop(n) for n in range(32)))
    return answers


# 6. No plain-text 500 ----------------------------------------------------------------------

@pytest.mark.parametrize("timestamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_messages_api_time_out_of_range_is_a_400(settings, timestamp):
    doc = {"message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab", "to": "447700900000", "from": "ACME",
           "timestamp": timestamp, "status": "delivered", "channel": "sms"}
    with TestClient(create_app(settings)) as ingest:
        answer = ingest.post(STATUS_PATH, json=doc)
    assert answer.status_code == 400 and answer.headers["content-type"] == "application/json"
    assert answer.json()["error"] == "malformed_field"


def test_a_signed_timestamp_of_thousands_of_digits_is_a_401(settings):
    settings = Settings(redis_url=settings.redis_url, signature_secret="s3cret")
    with TestClient(create_app(settings)) as ingest:
        answer = ingest.post(PATH, json={**receipt("BIG", "delivered", 5), "timestamp": "9" * 5000, "sig": "00"})
    assert answer.status_code == 401 and answer.json()["error"] == "signature_invalid"


def test_a_jwt_whose_iat_is_not_a_number_is_refused(settings):
    secret = "qwertyuiopasdfghjklzxcvbnm123456"
    settings = Settings(redis_url=settings.redis_url, signature_secret=secret)
    body = json.dumps({"message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab", "to": "447700900000",
                       "from": "ACME", "timestamp": "2023-05-01T14:00:04Z", "status": "delivered"}).encode()
    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = jwt.utils.base64url_encode(('{"iat": NaN, "payload_hash": "%s"}' % hashlib.sha256(body).hexdigest()).encode())
    signing = header + b"." + claims
    signature = jwt.utils.base64url_encode(hmac.new(secret.encode(), signing, hashlib.sha256).digest())
    token = (signing + b"." + signature).decode()
    with TestClient(create_app(settings)) as ingest:
        answer = ingest.post(STATUS_PATH, content=body, headers={"Content-Type": "application/json",
                                                                 "Authorization": f"Bearer {token}"})
    assert answer.status_code == 401 and answer.json()["error"].startswith("signature_")


# 7. The head limit holds however the head arrives ------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("kib", [17, 60, 120])
def test_a_head_over_the_limit_sent_in_one_write_is_a_431(redis_url, r, tmp_path, kib):
    with Service("ingest", redis_url, tmp_path) as ingest:
        head = (f"POST {PATH}?messageId=HEAD&status=delivered HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                f"X-Big: {'a' * kib * 1024}\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", ingest.port)) as sock:
            sock.sendall(head)
            sock.settimeout(5)
            answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431") and b"headers_too_large" in answer
    assert queue_of(r, Settings(redis_url=redis_url)).count == 0


# 8. Guessing the token, the Host header, framing -------------------------------------------

def test_wrong_tokens_are_limited_per_client(settings):
    settings = Settings(redis_url=settings.redis_url, api_token=TOKEN)
    with (TestClient(create_api(settings), client=("192.0.2.1", 1000)) as guesser,
          TestClient(create_api(settings), client=("192.0.2.2", 1000)) as other):
        for _ in range(10):
            assert guesser.get("/messages/X", headers={"Authorization": "Bearer guess"}).status_code == 401
        refused = guesser.get("/messages/X", headers={"Authorization": "Bearer guess"})
        assert refused.status_code == 429 and refused.json()["error"] == "too_many_guesses"
        assert int(refused.headers["retry-after"]) > 0
        assert guesser.get("/messages/X", headers=AUTH).status_code == 429, "even the right one, until the window ends"
        assert other.get("/messages/X", headers=AUTH).status_code == 404, "other clients are not held up"


def test_sign_ins_are_limited_and_nothing_is_built_from_the_host_header(settings):
    settings = Settings(redis_url=settings.redis_url, api_token=TOKEN)
    with TestClient(create_api(settings), follow_redirects=False, headers={"Host": "evil.example"}) as browser:
        start = browser.get("/console/")
        assert start.status_code == 303 and start.headers["location"].startswith("/console/login")
        login = browser.get("/console/login")
        assert "evil.example" not in login.text
        for header, value in (("x-frame-options", "DENY"), ("x-content-type-options", "nosniff")):
            assert login.headers[header] == value
        policy = login.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
        csrf = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)
        for _ in range(10):
            assert browser.post("/console/login", data={"csrf": csrf, "token": "guess"}).status_code == 401
        assert browser.post("/console/login", data={"csrf": csrf, "token": TOKEN}).status_code == 429
    with TestClient(create_api(settings), follow_redirects=False, client=("192.0.2.9", 1)) as browser:
        csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get("/console/login").text).group(1)
        signed = browser.post("/console/login", data={"csrf": csrf, "token": TOKEN, "next": "//evil.example/x"})
        assert signed.status_code == 303 and signed.headers["location"] == "/console/"


def test_only_the_networks_allowed_may_post_receipts_and_a_trusted_proxy_names_the_client(settings, r):
    settings = Settings(redis_url=settings.redis_url, webhook_allow=("10.0.0.0/8",), trusted_proxies=("127.0.0.1/32",))
    params = receipt("ALLOW1", "delivered", 5)
    with TestClient(create_app(settings), client=("192.0.2.1", 1)) as outsider:
        refused = outsider.post(PATH, json=params)
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    with TestClient(create_app(settings), client=("10.1.2.3", 1)) as vonage:
        assert vonage.post(PATH, json=params).status_code == 204
    with TestClient(create_app(settings), client=("127.0.0.1", 1)) as proxy:
        assert proxy.post(PATH, json=params, headers={"X-Forwarded-For": "10.9.9.9"}).status_code == 204
        forged = proxy.post(PATH, json=params, headers={"X-Forwarded-For": "10.9.9.9, 192.0.2.7"})
        assert forged.status_code == 403, "the nearest hop the proxy saw is the client, not what it was told"
    assert queue_of(r, settings).count == 2


# 9. Small things ---------------------------------------------------------------------------

@pytest.mark.slow
def test_malformed_requests_are_not_logged_above_debug(redis_url, r, tmp_path):
    with Service("ingest", redis_url, tmp_path, DLRQ_LOG_LEVEL="INFO") as ingest:
        for i in range(200):
            with socket.create_connection(("127.0.0.1", ingest.port)) as sock:
                sock.sendall(b"\x16\x03\x01 garbage %d\r\n\r\n" % i)
                sock.settimeout(2)
                try:
                    sock.recv(4096)
                except OSError:
                    pass
        time.sleep(0.5)
        log = ingest.text()
    assert "WARNING" not in log and "Invalid HTTP request" not in log, log[-2000:]


def test_registered_ids_are_bounded_and_numbers_finite(settings, r):
    with TestClient(create_app(settings)) as ingest:
        for bad in ("x" * 60_000, "with/slash", "with space", ""):
            body = send(["ok"])
            body["messages"][0]["message-id"] = bad
            answer = ingest.post("/messages", json=body)
            expected = 400 if bad else 400
            assert answer.status_code == expected and answer.json()["error"] in ("malformed_field", "missing_field")
        answer = ingest.post("/messages", content=b'{"messages": [{"message-id": "INF", "status": "0", '
                                                   b'"message-price": 1e999}]}',
                             headers={"Content-Type": "application/json"})
        assert answer.status_code == 400 and "out of range" in answer.json()["detail"]
    assert not r.exists(keys.message("INF"))


def test_a_message_has_at_most_so_many_attempts(settings, r):
    with TestClient(create_app(settings)) as ingest:
        assert ingest.post("/messages", json=send(["A0"])).status_code == 201
        for n in range(1, MAX_ATTEMPTS):
            assert ingest.post("/messages", json=send([f"A{n}"], retry_of="A0")).status_code == 201
        refused = ingest.post("/messages", json=send([f"A{MAX_ATTEMPTS}"], retry_of="A0"))
    assert refused.status_code == 409 and refused.json()["error"] == "too_many_attempts"
    assert len(run(r, read_message("A0")).attempts) == MAX_ATTEMPTS


@pytest.mark.slow
def test_a_worker_that_redis_forgot_registers_again(redis_url, r, tmp_path):
    with Service("worker", redis_url, tmp_path, DLRQ_MAINTENANCE_INTERVAL="1"):
        eventually(lambda: r.scard(REDIS_WORKER_KEYS) == 1, 20, "the worker to register")
        r.flushdb()
        eventually(lambda: r.scard(REDIS_WORKER_KEYS) == 1, 20, "the worker to register again")


# Every receipt: refused at the door, or applied ----------------------------------------------

EXAMPLES = int(os.environ.get("DLRQ_TEST_PROPERTY_EXAMPLES", "300"))
text = st.text(max_size=12)


def mostly(valid: st.SearchStrategy, invalid: st.SearchStrategy) -> st.SearchStrategy:
    """Valid seven times in eight: about half the receipts get through, and the rest test the door."""
    return st.tuples(st.integers(0, 7), valid, invalid).map(lambda drawn: drawn[2] if drawn[0] == 7 else drawn[1])


past = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2025, 12, 31))
fields = {
    "status": mostly(st.sampled_from(["accepted", "buffered", "delivered", "failed", "expired", "rejected",
                                      "unknown", "DELIVRD"]), st.one_of(st.just(""), text)),
    "err-code": mostly(st.from_regex(r"[0-9]{1,3}", fullmatch=True), st.one_of(text, st.just("9" * 12))),
    "price": mostly(st.from_regex(r"[0-9]{1,3}\.[0-9]{0,8}", fullmatch=True),
                    st.sampled_from(["Infinity", "NaN", "1e30", "-1", "1001", ".5", "1e-5", "x"])),
    "message-timestamp": mostly(
        st.one_of(past.map(lambda t: t.strftime("%Y-%m-%d %H:%M:%S")), past.map(lambda t: t.isoformat())),
        st.sampled_from(["9999-12-31 23:59:59", "0001-01-01 00:00:00", "1999-12-31 23:59:59", "zzz", "2099-01-01"])),
    "scts": mostly(st.from_regex(r"[0-9]{10}", fullmatch=True), text.filter(lambda t: not t.isdigit())),
    "network-code": text, "msisdn": text, "to": text, "client-ref": text,
}
receipts_ = st.fixed_dictionaries(
    {"messageId": mostly(st.from_regex(r"[A-Za-z0-9._:~-]{1,20}", fullmatch=True),
                         st.one_of(text, st.just("a" * 200), st.just("with/slash"))),
     "status": fields["status"]},
    optional={**{k: v for k, v in fields.items() if k != "status"}, "x-extra": text, "api-key": text},
)


def every_acknowledged_receipt_is_applied(settings: Settings, r: redis.Redis) -> None:
    acknowledged: list[dict[str, str]] = []
    counter = iter(range(10**9))

    @hyp_settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(params=receipts_, how=st.sampled_from(["json", "form", "query"]), numbers=st.booleans())
    def post(params: dict[str, str], how: str, numbers: bool) -> None:
        # A fresh id prefix each time: a part's caps are not what this is about.
        if params["messageId"] and re.fullmatch(r"[A-Za-z0-9._:~-]{1,20}", params["messageId"]):
            params = {**params, "messageId": f"Q{next(counter)}-{params['messageId']}"}
        body = {k: (int(v) if numbers and v.isascii() and v.isdigit() and len(v) < 15 else v) for k, v in params.items()}
        if how == "json":
            answer = ingest.post(PATH, json=body)
        elif how == "form":
            answer = ingest.post(PATH, data=params)
        else:
            answer = ingest.get(PATH, params=params)
        assert answer.status_code == 204 or 400 <= answer.status_code < 500, (answer.status_code, answer.text)
        if answer.status_code != 204:
            assert answer.json()["error"] and answer.json()["detail"]
        else:  # as JSON numbers, as the ingest keeps them: strings
            acknowledged.append({k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}
                                if how == "json" else params)

    with ingest_and_api(settings) as (ingest, api):
        post()
        drain(settings)
        drain(settings)
        missing = []
        for params in acknowledged:
            found = view(api, params["messageId"])
            history = found["parts"][0]["history"] if found else []
            key = (params["status"], params.get("err-code"), params.get("message-timestamp"))
            if not any((h["status"], h["err_code"], h["message_timestamp"]) == key for h in history):
                missing.append(params)
    print(f"{len(acknowledged)} of {EXAMPLES} examples acknowledged, {len(missing)} missing")
    assert acknowledged, "some receipts were valid"
    assert not missing, f"acknowledged but never applied: {missing[:5]}"


def test_every_acknowledged_receipt_is_applied_whatever_it_holds(settings, r):
    """Property: any receipt the ingest answers 2xx is, once the workers ran, visible in its message's
    history; anything else was refused with a 4xx and its reason. DLRQ_TEST_PROPERTY_EXAMPLES sets how
    many examples (CI runs a few hundred)."""
    every_acknowledged_receipt_is_applied(settings, r)
