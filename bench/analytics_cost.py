"""What analytics cost: the worker's rate with them on and off, and Redis memory for 30 days of them.

The memory figure comes from a realistic mix applied hour by hour for 30 days (200 networks,
1,000 client-refs a day, 20 countries, registrations for half of the messages), measured with
MEMORY USAGE over the analytics' own keys.
"""

from __future__ import annotations

import random
import time
from typing import Any

import redis

from dlrq.core import analytics, keys
from dlrq.core.calls import run
from dlrq.core.receipt import Receipt
from dlrq.core.registration import parse_send
from dlrq.core.settings import Settings
from dlrq.core.store import register
from workers.batch import apply

from .ceiling import BATCH, fill
from .harness import LOAD_CORE, best_of, python, runs_by_name, server_on
from .run import drain

DAYS = 30
PER_HOUR = 300
NETWORKS = [f"{200 + n // 10:03d}{n % 10:02d}" for n in range(200)]
COUNTRIES = ["44", "33", "49", "1415", "34", "39", "31", "46", "47", "45", "48", "351", "353", "61", "64", "81",
             "82", "91", "55", "52"]


ON, OFF = "dlrq worker, analytics on", "dlrq worker, analytics off"


def worker_rates(url: str, client: redis.Redis, receipts: int, cap: float) -> list[dict[str, Any]]:
    """One pinned worker draining the same backlog with analytics on and off, in the order on, off,
    off, on, on, off (the machine's drift over a minute is as large as the difference measured),
    with the server on the other core (left to float, it shares the worker's core in some runs and
    not in others); the two are compared by their medians."""
    def measure(tag: int, name: str) -> dict[str, Any]:
        client.flushdb()
        fill(url, receipts, 3000 + tag)
        env = {"DLRQ_REDIS_URL": url, **({} if name == ON else {"DLRQ_ANALYTICS_RETENTION": "0"})}
        return drain(name, [python(), "-m", "dlrq", "worker"], env, client, "dlrq", BATCH, cap)

    with server_on(client, LOAD_CORE):
        runs = runs_by_name((ON, OFF, OFF, ON, ON, OFF), measure)
    client.flushdb()
    return [best_of(runs[name], "receipts_per_s") for name in (ON, OFF)]


def thirty_days(url: str) -> dict[str, Any]:
    """Redis memory the analytics of DAYS days take, in a spare database."""
    spare = url.rsplit("/", 1)[0] + "/2"  # a URL's database wins over from_url's db argument
    client = redis.Redis.from_url(spare)
    client.execute_command("FLUSHDB", "SYNC")
    settings = Settings(redis_url=spare)
    rng = random.Random(30)
    start = time.time() - DAYS * 86_400
    count = 0
    for hour in range(DAYS * 24):
        moment = start + hour * 3600
        refs = [f"campaign-{hour // 24}-{n}" for n in rng.sample(range(1000), 40)]
        batch = []
        for i in range(PER_HOUR):
            number = rng.choice(COUNTRIES) + f"{rng.randrange(10**8):08d}"
            message_id = f"M{hour:04d}{i:05d}"
            params = {"messageId": message_id, "msisdn": number, "network-code": rng.choice(NETWORKS),
                      "client-ref": rng.choice(refs), "price": "0.03330000", "err-code": "0",
                      "status": "delivered", "message-timestamp": "2026-01-01 12:00:00", "scts": "2601011200"}
            if rng.random() < 0.1:
                params.update(status="failed", **{"err-code": rng.choice(["1", "2", "3", "6", "8", "14"])})
            if i % 2:
                send = {"messages": [{"message-id": message_id, "status": "0", "to": number,
                                      "network": params["network-code"], "client-ref": params["client-ref"]}]}
                run(client, register(parse_send(send), settings, now=moment + i))
            batch.append(Receipt(params, time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(moment + i))))
        apply(client, batch, settings, now=moment)
        count += len(batch)
    used = 0
    for pattern in (f"{keys.ANALYTICS}*", keys.OUTCOMES, keys.TIME_TO_RECEIPT):
        for key in client.scan_iter(match=pattern, count=1000):
            used += int(client.memory_usage(key, samples=0) or 0)
    client.execute_command("FLUSHDB", "SYNC")
    return {"days": DAYS, "receipts": count, "networks": len(NETWORKS), "bytes": used,
            "dimensions": list(analytics.DIMENSIONS)}

