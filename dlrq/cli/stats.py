"""`dlrq stats`: the deployment at a glance, read from Redis."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import click
import redis
from redis.exceptions import RedisError

from dlrq.core import connect, keys, readiness
from dlrq.core.calls import run
from dlrq.core.correlate import render_unregistered
from dlrq.core.deployment import read_deployment
from dlrq.core.jobs import QueueKeys
from dlrq.core.records import load_part
from dlrq.core.store import find_message

from .common import load_settings, unreachable, where

SPANS = {"last minute": 60, "last 15 minutes": 900}
FIELDS = (keys.RATE_ACCEPTED, keys.RATE_NEW, keys.RATE_RESEND)
# What each rate counts, in words: "accepted" is also a receipt's status, which these are not.
WORDS = {keys.RATE_ACCEPTED: "acknowledged by the ingest", keys.RATE_NEW: "applied new",
         keys.RATE_RESEND: "applied as resends"}
SCAN_CHUNK = 500


def throughput(connection: redis.Redis, now: float) -> dict[str, dict[str, float]]:
    """Receipts/s over each span, ending now (the current bucket counts for the time it has run)."""
    size = keys.RATE_BUCKET
    current = int(now // size)
    longest = max(SPANS.values()) // size
    with connection.pipeline(transaction=False) as pipe:
        for bucket in range(current - longest + 1, current + 1):
            pipe.hgetall(keys.rate(bucket))
        buckets = [{k.decode(): int(v) for k, v in b.items()} for b in pipe.execute()]
    rates = {}
    for span, seconds in SPANS.items():
        n = seconds // size
        covered = (n - 1) * size + max(now - current * size, 1.0)
        rates[span] = {field: sum(b.get(field, 0) for b in buckets[-n:]) / covered for field in FIELDS}
    return rates


def message_statuses(connection: redis.Redis, progress: Callable[[int], object]) -> Counter[str]:
    """Every message's status under the contract's rules: a scan of all of them, so it takes
    a while on millions (`--no-messages` skips it)."""
    counts: Counter[str] = Counter()
    prefix = keys.message("")
    for key in connection.scan_iter(match=keys.message("*"), count=1000):
        view = run(connection, find_message(key.decode()[len(prefix):]))
        if view is not None:
            counts[view["status"]] += 1
        progress(1)
    chunk: list[bytes] = []
    for key in connection.scan_iter(match=keys.part("*"), count=1000):
        chunk.append(key)
        if len(chunk) == SCAN_CHUNK:
            counts += _unregistered(connection, chunk)
            progress(len(chunk))
            chunk = []
    counts += _unregistered(connection, chunk)
    progress(len(chunk))
    return counts


def _unregistered(connection: redis.Redis, part_keys: list[bytes]) -> Counter[str]:
    """Parts that belong to no registered message are messages of their own (a part's record names
    its message; one written by dlrq 0.1-0.2 has an owner key instead)."""
    prefix = keys.part("")
    ids = [k.decode()[len(prefix):] for k in part_keys]
    with connection.pipeline(transaction=False) as pipe:
        for message_id in ids:
            pipe.exists(keys.owner(message_id))
            pipe.get(keys.part(message_id))
        replies = pipe.execute()
    counts: Counter[str] = Counter()
    for message_id, owned, raw in zip(ids, replies[::2], replies[1::2]):
        doc = load_part(raw)
        if not owned and doc is not None and "o" not in doc:
            counts[render_unregistered(message_id, doc)["status"]] += 1
    return counts


def render(queues: dict[str, dict[str, Any]], rates: dict[str, dict[str, float]], counters: dict[str, int],
           messages: Counter[str] | None) -> str:
    lines = []
    for name, q in queues.items():
        lines.append(f"queue {name}: {q['waiting']:,} waiting (oldest {q['oldest_age']:.1f} s), "
                      f"{q['failed']:,} failed, {q['scheduled']:,} scheduled, {q['workers']} worker(s)")
    lines.append("receipts/s: " + "; ".join(
        f"{span}: " + ", ".join(f"{WORDS[field]} {rate[field]:,.1f}" for field in FIELDS)
        for span, rate in rates.items()))
    lines.append("since the counters began: " + (", ".join(f"{k} {v:,}" for k, v in sorted(counters.items()))
                                                   or "nothing yet"))
    if messages is not None:
        total = sum(messages.values())
        shown = ", ".join(f"{status} {n:,}" for status, n in sorted(messages.items())) or "none"
        lines.append(f"messages by status ({total:,}): {shown}")
    return "\n".join(lines)


def memory_line(memory: dict[str, Any]) -> str:
    used = f"memory: {memory['memory_used_bytes'] / 2**20:,.1f} MiB used"
    if "memory_used_share" not in memory:
        return f"{used}, no maxmemory (set one: dlrq can then say when it runs short)"
    line = f"{used} of {memory['memory_max_bytes'] / 2**20:,.1f} MiB maxmemory ({memory['memory_used_share']:.0%})"
    if "memory_high_water" in memory:
        line += (f"; the record is shed from {memory['memory_shed_from']:.0%}, receipts are refused (503) from "
                 f"{memory['memory_high_water']:.0%}")
    return line


@click.command()
@click.option("--no-messages", is_flag=True, help="Skip counting messages by status (a scan of all of them).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
def stats(no_messages: bool, as_json: bool) -> None:
    """Queue depth, rates, failed jobs, counters, and messages by status."""
    from tqdm import tqdm

    settings = load_settings()
    names = settings.queues

    async def deployment():
        client = connect.async_client(settings)
        try:
            return await read_deployment(client, [QueueKeys(n) for n in names], datetime.now(timezone.utc))
        finally:
            await client.aclose()

    state = asyncio.run(deployment())
    if not state.redis_up:
        raise click.ClickException(f"Redis unreachable at {where(settings)}")
    queues = {n: {"waiting": state.depth[n], "oldest_age": state.oldest_age[n], "failed": state.failed[n],
                  "scheduled": state.scheduled[n], "workers": state.workers[n]} for n in names}
    try:
        with connect.client(settings) as connection:
            rates = throughput(connection, time.time())
            messages = None
            if not no_messages:
                with tqdm(unit=" keys", unit_scale=True, file=sys.stderr, leave=False, disable=None) as bar:
                    messages = message_statuses(connection, bar.update)
    except RedisError as exc:
        unreachable(settings, exc)
    memory = readiness.headroom(readiness.Memory(state.used_memory, state.maxmemory), settings.memory_high_water)
    if as_json:
        click.echo(json.dumps({"server": settings.effective_redis_url, "maxmemory_policy": state.maxmemory_policy,
                               "may_evict": state.may_evict, "memory": memory, "queues": queues, "rates": rates,
                               "counters": state.counters, "messages": messages}))
    else:
        click.echo(f"server: {where(settings)}; maxmemory-policy {state.maxmemory_policy}")
        click.echo(memory_line(memory))
        if state.may_evict:
            click.echo("DANGER: this Redis may evict acknowledged receipts when its memory is full; "
                       "set maxmemory-policy noeviction (dlrq refuses receipts until then)")
        click.echo(render(queues, rates, state.counters, messages))
