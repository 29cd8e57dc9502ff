"""What a realistic message costs in Redis, with every default on (the record, analytics), through a real
ingest and worker: bytes per message overall and per key family, 15 s after the queue drains and
again once RQ's own result TTLs have passed.

The mix: messages of one part (70%), two (20%) or three (10%), each registered through POST /messages
with its send response (to, client-ref, message-price, network); each part receives `accepted`,
then `delivered` (one part in ten `failed`, err-code 6); one receipt in twenty is sent twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

import aiohttp
import redis

from .harness import free_port, process, python

TOKEN = "bench-token"
WEBHOOK = "/webhooks/delivery-receipt"
# Key families, by the prefix that names them (the first that matches).
FAMILIES = (
    ("part records", "dlrq:part:"), ("messages", "dlrq:msg:"), ("owners", "dlrq:owner:"),
    ("record stream", "dlrq:record"), ("deadlines", "dlrq:due"), ("deadlines", "dlrq:deadlines"),
    ("evaluate", "dlrq:evaluate"),
    ("client-ref index", "dlrq:ref:"), ("message list", "dlrq:list"), ("event records", "dlrq:event:"),
    ("handler markers", "dlrq:delivered:"), ("analytics", "dlrq:an:"), ("other dlrq", "dlrq:"),
    ("RQ jobs and results", "rq:job:"), ("RQ results", "rq:results:"), ("RQ other", "rq:"),
)
NETWORKS = ("23410", "23415", "20801", "26201", "310260")
WARM_UP = 100


def mix(messages: int, seed: int = 30, first: int = 0
        ) -> tuple[list[dict[str, Any]], list[dict[str, str]], list[dict[str, str]]]:
    """(send responses, the first wave of receipts, the second wave), resends included; the messages
    are numbered from `first` (their ids, numbers and client-refs)."""
    rng = random.Random(seed)
    sends, accepted, finals = [], [], []
    for m in range(first, first + messages):
        parts = rng.choices([1, 2, 3], [70, 20, 10])[0]
        number = f"4477009{m:05d}"
        network = rng.choice(NETWORKS)
        ref = f"order-{m // 10}"
        ids = [f"{0x0C000000_00000000 + m * 4 + p:016X}" for p in range(parts)]
        sends.append({"message-count": str(parts), "messages": [
            {"to": number, "message-id": i, "status": "0", "remaining-balance": "10.00000000",
             "message-price": "0.03330000", "network": network, "client-ref": ref} for i in ids]})
        for i in ids:
            base = {"messageId": i, "msisdn": number, "to": "ACME", "network-code": network, "price": "0.03330000",
                    "client-ref": ref, "scts": "2612041200", "api-key": "abcd1234"}
            accepted.append({**base, "status": "accepted", "err-code": "0", "message-timestamp": "2026-12-04 12:00:01"})
            failed = rng.random() < 0.1
            finals.append({**base, "status": "failed" if failed else "delivered", "err-code": "6" if failed else "0",
                           "scts": "2612041201", "message-timestamp": "2026-12-04 12:00:09"})
    for wave in (accepted, finals):
        wave += [dict(r) for r in rng.sample(wave, len(wave) // 20)]
        rng.shuffle(wave)
    return sends, accepted, finals


async def _send_all(base: str, sends: list[dict], waves: list[list[dict]]) -> Counter[int]:
    answers: Counter[int] = Counter()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=32), headers=headers) as session:
        async def post(path: str, body: dict) -> None:
            async with session.post(path, json=body) as answer:
                answers[answer.status] += 1

        await asyncio.gather(*(post("/messages", s) for s in sends))
        for wave in waves:
            await asyncio.gather(*(post(WEBHOOK, r) for r in wave))
    return answers


def families(client: redis.Redis) -> dict[str, int]:
    """Bytes by key family (MEMORY USAGE of every key, SAMPLES 0: every element counted)."""
    sizes: Counter[str] = Counter()
    for key in client.scan_iter(count=1000):
        name = key.decode()
        family = next(f for f, prefix in FAMILIES if name.startswith(prefix)) if name.startswith(("dlrq:", "rq:")) \
            else "other"
        sizes[family] += int(client.memory_usage(key, samples=0) or 0)
    return dict(sizes)


def realistic(url: str, messages: int, settle: float = 15.0, later: float = 75.0) -> dict[str, Any]:
    """In a spare database of the bench's server, with one ingest and one worker of their own. What the
    messages add: measured from after a warm-up of WARM_UP messages (the processes connected, the
    scripts loaded, the database's tables made), so that no fixed cost is spread over the messages."""
    spare = url.rsplit("/", 1)[0] + "/3"
    client = redis.Redis.from_url(spare)
    client.execute_command("FLUSHDB", "SYNC")
    sends, accepted, finals = mix(messages)
    warm = mix(WARM_UP, seed=31, first=messages)
    env = {"DLRQ_REDIS_URL": spare, "DLRQ_API_TOKEN": TOKEN}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with process([python(), "-m", "dlrq", "ingest"], {**env, "DLRQ_PORT": str(port)}, None, port), \
            process([python(), "-m", "dlrq", "worker"], env, None):
        asyncio.run(_send_all(base, warm[0], [warm[1], warm[2]]))
        _wait_drained(client)
        time.sleep(settle)
        before = _reading(client)
        answers = asyncio.run(_send_all(base, sends, [accepted, finals]))
        _wait_drained(client)
        time.sleep(settle)
        drained = _reading(client, before)
        time.sleep(max(0.0, later - settle))
        steady = _reading(client, before)
    parts = sum(len(s["messages"]) for s in sends)
    client.execute_command("FLUSHDB", "SYNC")
    return {
        "messages": messages, "parts": parts, "receipts": len(accepted) + len(finals), "answers": dict(answers),
        "mix": "1 part 70%, 2 parts 20%, 3 parts 10%; registered; accepted then delivered (10% failed, err-code 6); "
               "5% of receipts sent twice; record and analytics on",
        "after_drain_s": settle, "later_s": later,
        "bytes_per_message": drained["used"] / messages, "families_per_message": _per(drained, messages),
        "steady_bytes_per_message": steady["used"] / messages, "steady_families_per_message": _per(steady, messages),
    }


def _wait_drained(client: redis.Redis) -> None:
    while client.llen("rq:queue:dlrq") or client.zcard("rq:wip:dlrq") or client.llen("rq:queue:dlrq-handlers"):
        time.sleep(0.2)


def _reading(client: redis.Redis, since: dict[str, Any] | None = None) -> dict[str, Any]:
    """used_memory and the families' bytes (less what they were `since`)."""
    used, by_family = int(client.info("memory")["used_memory"]), families(client)
    if since is None:
        return {"used": used, "families": by_family}
    return {"used": used - since["used"],
            "families": {f: size - since["families"].get(f, 0) for f, size in by_family.items()}}


def _per(reading: dict[str, Any], messages: int) -> dict[str, float]:
    return {family: round(size / messages, 1) for family, size in sorted(reading["families"].items(),
                                                                         key=lambda item: -item[1])}


if __name__ == "__main__":
    import json
    import sys
    import tempfile
    from pathlib import Path

    from dlrq.cli.embedded import embedded_server

    with tempfile.TemporaryDirectory() as data, embedded_server(Path(data), "everysec") as server:
        print(json.dumps(realistic(server, int(sys.argv[1]) if len(sys.argv) > 1 else 2000), indent=1))
