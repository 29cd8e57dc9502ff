"""Capacity: the compact records give back exactly what they were given, and a Redis running short of
memory sheds the record rather than refuse receipts."""

from __future__ import annotations

import asyncio
import base64
import os
import time

import aiohttp
import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from dlrq.core import keys, record
from dlrq.core.receipt import Receipt
from dlrq.core.records import load_part
from dlrq.core.settings import Settings
from ingest.api import create_api
from tests.support.processes import Service, eventually
from tests.support.receipts import receipt
from workers.batch import analysed, apply

pytestmark = pytest.mark.integration
PATH = "/webhooks/delivery-receipt"

digits = st.text("0123456789", min_size=1, max_size=14)
stamps = st.one_of(
    st.builds(lambda d, s: f"2026-{d % 12 + 1:02d}-{d % 28 + 1:02d} {s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}",
              st.integers(0, 400), st.integers(0, 86_399)),
    st.sampled_from(["2026-12-04T12:00:01", "2026-12-04 12:00:01.25", "2026-02-29 00:00:00", "2026-12-04 24:00:00"]))
received = st.one_of(st.sampled_from(["2026-12-04T12:00:01.123Z", "2026-12-04T12:00:01.000Z",
                                      "2026-12-04T12:00:01Z", "2026-12-04T12:00:01.123456+00:00"]),
                     st.integers(1_700_000_000_000, 1_900_000_000_000).map(
                         lambda ms: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"))
fields = st.dictionaries(st.sampled_from(["to", "client-ref", "network-code", "x-extra", "msisdn"]),
                         st.text("abc0123.-", max_size=8), max_size=4)
receipts = st.lists(st.builds(
    lambda status, err, stamp, scts, at, extra, words: (
        {**receipt("RT", status, 0, err), "message-timestamp": stamp, "scts": scts, **extra, **words}, at),
    st.sampled_from(["accepted", "delivered", "failed", "expired", "buffered", "unknown-word"]),
    digits, stamps, digits, received, fields,
    st.one_of(st.just({}), st.builds(lambda w: {"messages-status": w}, st.sampled_from(["submitted", "read"])))),
    min_size=1, max_size=6)


@hyp_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=receipts)
def test_a_part_record_gives_back_every_receipt_exactly(r, settings, batch):
    """Whatever the receipts share or not, and whatever form their times take, the stored part's
    history is the receipts as they were given (the fields a part keeps of each), resends once."""
    r.delete(keys.part("RT"))
    given_ = [Receipt(params, at) for params, at in batch]
    for one in given_:  # one batch each, so that each is compared with what the part already holds
        apply(r, [one], settings)
    expected = []
    for one in given_:
        entry = analysed(one)
        if not any(_same(entry, seen) for seen in expected):
            expected.append(entry)
    assert load_part(r.get(keys.part("RT")))["history"] == expected


def _same(a: dict, b: dict) -> bool:
    """The contract's resend rule."""
    return all(a.get(f) == b.get(f) for f in ("status", "err-code", "scts", "message-timestamp", "messages-status"))


@pytest.mark.slow
def test_a_redis_short_of_memory_sheds_the_record_and_acknowledges_every_receipt(private_server, tmp_path):
    """The record fills a small Redis (each receipt carries 38 KB that does not compress): from 5% under
    the high-water mark the workers shed its oldest batches, each shedding logged and counted, so the
    mark is never reached; every receipt is acknowledged, and applied."""
    url = private_server.url
    r = redis.Redis.from_url(url)
    r.config_set("maxmemory", 64 * 1024 * 1024)
    sent = 2000
    try:
        with Service("ingest", url, tmp_path, DLRQ_LOG_LEVEL="INFO") as ingest, \
                Service("worker", url, tmp_path, DLRQ_LOG_LEVEL="INFO") as worker:
            answers = asyncio.run(_send_paced(ingest.base, sent, per_second=50))
            eventually(lambda: r.llen("rq:queue:dlrq") == 0, 60, "the worker to apply what was acknowledged")
            worker_log = worker.text()
        with TestClient(create_api(Settings(redis_url=url))) as api:
            metrics = api.get("/metrics").text
        assert answers == {204: sent}, "every receipt acknowledged"
        missing = [i for i in range(sent) if not r.exists(keys.part(f"FULL{i:05d}"))]
        assert not missing, f"{len(missing)} acknowledged receipts not applied"
        shed = int(r.hget(keys.COUNTERS, keys.COUNT_RECORD_SHED) or 0)
        assert shed > 0 and f"dlrq_record_shed_batches_total {shed}.0" in metrics
        assert "shed the record's" in worker_log and "oldest batches" in worker_log
        kept = [line for _, entry in r.xrange(keys.RECORD) for line in record.lines(entry)]
        assert b'"FULL00000"' not in b"".join(kept) and b'"FULL01999"' in b"".join(kept), "the oldest went first"
    finally:
        r.config_set("maxmemory", 0)
        r.close()


async def _send_paced(base: str, count: int, per_second: float) -> dict[int, int]:
    answers: dict[int, int] = {}
    started = time.monotonic()
    async with aiohttp.ClientSession(base) as session:
        async def post(i: int) -> None:
            await asyncio.sleep(max(0.0, started + i / per_second - time.monotonic()))
            padding = {f"x-pad-{n}": base64.b64encode(os.urandom(750)).decode() for n in range(38)}
            async with session.post(PATH, json={**receipt(f"FULL{i:05d}", "delivered", 5), **padding}) as answer:
                answers[answer.status] = answers.get(answer.status, 0) + 1

        await asyncio.gather(*(post(i) for i in range(count)))
    return answers
