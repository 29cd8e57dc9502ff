"""Delivery analytics against an oracle: real ingest and worker processes, a few hundred messages
over networks, countries and client-refs, with resends, disorder and outcomes that change."""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from decimal import Decimal

import httpx
import pytest
import redis

from dlrq.core import analytics
from tests.support.oracle import RANK, deciding
from tests.support.processes import dlrq, dlrq_env, eventually, free_port, spawn, wait_http
from tests.support.sender import Sender

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NETWORKS = ["23410", "23415", "20801", "26201", "310004"]
NUMBERS = {"GB": "4477009{:05d}", "FR": "336123{:05d}", "DE": "4915123{:05d}", "US": "1415555{:04d}"}
REFS = [f"campaign-{i}" for i in range(8)]
MAX_REFS = 5
# Seconds from registration to the wave of first final receipts: well inside the histogram's
# buckets (0-1, 2-5, 5-10), so that the server's clock cannot move one across a bound.
WAVES = (0.3, 3.4, 7.3)


def plan(seed: int) -> tuple[list[dict], list[list[dict]], list[dict]]:
    """(registrations, receipts in waves, receipts for unregistered messages), by construction."""
    rng = random.Random(seed)
    sends, waves, loose = [], [[] for _ in WAVES], []
    for m in range(260):
        country = rng.choice(sorted(NUMBERS))
        number = NUMBERS[country].format(m)
        network, ref = rng.choice(NETWORKS), rng.choice(REFS)
        price = rng.choice(["0.03330000", "0.04500000", "0.01230000"])
        ids = [f"AN{seed}M{m:04d}P{p}" for p in range(rng.choice([1, 1, 2, 3]))]
        registered = m % 5 != 0
        if registered:
            sends.append({"message-count": str(len(ids)), "messages": [
                {"message-id": i, "to": number, "status": "0", "network": network, "client-ref": ref,
                 "message-price": price} for i in ids]})
        for p, part in enumerate(ids):
            base = {"messageId": part, "msisdn": number, "network-code": network, "client-ref": ref, "price": price,
                    "to": "Vonage", "scts": "2601011200"}
            chain = [{**base, "status": "accepted", "err-code": "0", "message-timestamp": "2026-01-01 12:00:01"}]
            roll = rng.random()
            if roll < 0.06:
                continue  # a silent part: no final receipt, ever
            if roll < 0.7:
                final = [("delivered", "0")]
            elif roll < 0.8:
                final = [("failed", rng.choice(["2", "3", "6"]))]
            elif roll < 0.85:
                final = [("expired", "1")]
            elif roll < 0.9:
                final = [("rejected", "14")]
            elif roll < 0.95:
                final = [("unknown", "1"), ("delivered", "0")]  # a later receipt decides: the outcome moves
            else:
                final = [("delivered", "0"), ("failed", "8")]  # a failure reported after a delivery
            for n, (status, code) in enumerate(final):
                chain.append({**base, "status": status, "err-code": code,
                              "message-timestamp": f"2026-01-01 12:0{n + 1}:00"})
            rng.shuffle(chain)
            if rng.random() < 0.2:
                chain.append(dict(rng.choice(chain)))  # Vonage sends one again
            (waves[rng.randrange(len(WAVES))] if registered else loose).extend(chain)
    return sends, waves, loose


def oracle(sends: list[dict], receipts: list[dict], by: str, first_final_wave: dict[str, float]) -> dict[str, dict]:
    """The contract's figures, written out from what was sent (client-refs uncapped)."""
    rows: dict[str, dict] = defaultdict(lambda: {"final": 0, **{o: 0 for o in analytics.OUTCOMES}, "cost": Decimal(0),
                                                 "err_codes": defaultdict(int), "submitted": 0, "resolved": 0,
                                                 "latencies": []})
    by_part: dict[str, list[dict]] = defaultdict(list)
    for params in receipts:
        if params not in by_part[params["messageId"]]:
            by_part[params["messageId"]].append(params)
    for part, history in by_part.items():
        decider = deciding(history)
        if decider is None or RANK.get(decider["status"], 0) < RANK["unknown"]:
            continue
        row = rows[value_of(by, decider)]
        row["final"] += 1
        row[decider["status"]] += 1
        row["cost"] += Decimal(decider["price"])
        if decider["err-code"] != "0":
            row["err_codes"][decider["err-code"]] += 1
    if by != "err_code":
        for send in sends:
            for part in send["messages"]:
                reg = {"network-code": part["network"], "msisdn": part["to"], "client-ref": part["client-ref"]}
                row = rows[value_of(by, reg)]
                row["submitted"] += 1
                if part["message-id"] in first_final_wave:
                    row["resolved"] += 1
                    row["latencies"].append(first_final_wave[part["message-id"]])
    return rows


def value_of(by: str, params: dict) -> str:
    return {"network": params.get("network-code"), "country": analytics.country(params.get("msisdn")),
            "client_ref": params.get("client-ref"), "err_code": params.get("err-code")}[by]


def true_percentile(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * p / 100 + 0.999999) - 1)]


def bucket(seconds: float) -> int:
    return analytics.latency_bucket(seconds)


def check(found: dict, expected: dict[str, dict], by: str) -> None:
    rows = {row["key"]: row for row in found["rows"]}
    if by == "client_ref":
        named = [key for key in rows if key != analytics.OTHER]
        assert len(named) <= MAX_REFS, f"at most {MAX_REFS} client-refs an hour, the rest as (other)"
        other = {key: row for key, row in expected.items() if key not in rows}
        if other:
            merged = expected.setdefault(analytics.OTHER, {k: v for k, v in next(iter(other.values())).items()})
            for row in list(other.values())[1:]:
                for k in ("final", *analytics.OUTCOMES, "cost", "submitted", "resolved"):
                    merged[k] += row[k]
                merged["latencies"] = merged["latencies"] + row["latencies"]
                for code, n in row["err_codes"].items():
                    merged["err_codes"][code] += n
            for key in other:
                if key != analytics.OTHER:
                    expected.pop(key)
    assert sorted(rows) == sorted(expected), (sorted(rows), sorted(expected))
    for key, want in expected.items():
        got = rows[key]
        for field in ("final", *analytics.OUTCOMES, "submitted"):
            assert got[field] == want[field], (by, key, field, got[field], want[field])
        assert Decimal(got["cost"]) == want["cost"], (by, key, "cost")
        assert got["err_codes"] == dict(want["err_codes"]), (by, key, "err_codes")
        assert got["delivery_rate"] == (round(want["delivered"] / want["final"], 4) if want["final"] else None)
        assert got["dlr_ratio"] == (round(want["resolved"] / want["submitted"], 4) if want["submitted"] else None)
        if want["latencies"]:
            for p in (50, 90, 99):
                true = true_percentile(want["latencies"], p)
                assert bucket(got["latency_s"][f"p{p}"]) == bucket(true), (by, key, p, got["latency_s"], true)


def test_analytics_equal_an_oracle_and_a_replay_changes_nothing(redis_url, tmp_path):
    port, api_port = free_port(), free_port()
    env = dlrq_env(redis_url, DLRQ_PORT=str(port), DLRQ_API_PORT=str(api_port), DLRQ_ANALYTICS_MAX_REFS=str(MAX_REFS),
                   DLRQ_BATCH_MAX_WAIT_MS="2")
    ingest, api, worker = spawn("ingest", env), spawn("api", env), spawn("worker", env)
    base, api_base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{api_port}"
    sends, waves, loose = plan(seed=7)
    try:
        wait_http(f"{base}/readyz")
        wait_http(f"{api_base}/readyz")
        sender = Sender(base, connections=16)
        sender.send_all(loose[: len(loose) // 2])  # some receipts before any registration
        with httpx.Client(base_url=base) as http:
            for send in sends:
                assert http.post("/messages", json=send).status_code == 201
        registered_at = time.monotonic()
        first_final: dict[str, float] = {}
        for offset, wave in zip(WAVES, waves):
            time.sleep(max(0.0, registered_at + offset - time.monotonic()))
            sender.send_all(wave)
            for params in wave:
                if RANK.get(params["status"], 0) >= RANK["unknown"]:
                    first_final.setdefault(params["messageId"], offset)
        sender.send_all(loose[len(loose) // 2:])
        receipts = [p for wave in waves for p in wave] + loose
        client = redis.Redis.from_url(redis_url)
        eventually(lambda: client.llen("rq:queue:dlrq") == 0 and client.zcard("rq:wip:dlrq") == 0, 60,
                   "the worker to apply every receipt")
        answers = {}
        with httpx.Client(base_url=api_base) as http:
            for by in analytics.DIMENSIONS:
                found = http.get("/analytics", params={"by": by, "since": "-2h"}).json()
                check(found, oracle(sends, receipts, by, first_final), by)
                reported = json.loads(dlrq(env, "report", "--by", by.replace("_", "-"), "--since", "-2h",
                                           "--format", "json").stdout)
                assert reported["rows"] == found["rows"] and reported["total"] == found["total"]
                answers[by] = found
            exported = tmp_path / "record.jsonl"
            dlrq(env, "export", "-o", str(exported))
            dlrq(env, "replay", str(exported))
            eventually(lambda: client.llen("rq:queue:dlrq") == 0 and client.zcard("rq:wip:dlrq") == 0, 60,
                       "the worker to apply the replay")
            for by in analytics.DIMENSIONS:
                again = http.get("/analytics", params={"by": by, "since": "-2h"}).json()
                assert again["rows"] == answers[by]["rows"], f"replaying changed the figures by {by}"
            assert "delivery by network" in dlrq(env, "report", "--since", "-2h").stdout
            csv_lines = dlrq(env, "report", "--by", "country", "--since", "-2h", "--format", "csv").stdout.splitlines()
            assert csv_lines[0].startswith("key,final,delivered") and len(csv_lines) == len(answers["country"]["rows"]) + 2
    finally:
        for process in (ingest, api, worker):
            process.terminate()
            process.wait(20)
