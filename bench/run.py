"""The benchmark scenarios, run one after another against one Redis-compatible server."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import redis

from dlrq.core.receipt import Receipt, utc_now_iso
from dlrq.core.settings import Settings
from workers.batch import apply

from .harness import (
    LOAD_CORE,
    SERVER_CORE,
    best_of,
    free_port,
    last_words,
    measure_cost,
    process,
    python,
    runs_by_name,
    wrk,
)
from .readers import TOKEN, busy_readers
from .report import DLRQ_INGEST_READERS

DLRQ_QUEUE = "dlrq"
NAIVE_QUEUE = "naive"


def uvicorn(app: str, port: int) -> list[str]:
    return [python(), "-m", "uvicorn", app, "--port", str(port), "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning"]


def ingest_designs(url: str, express: bool) -> dict[str, tuple[list[str], dict[str, str], str | None]]:
    """Each design's command line, environment and queue, by name (the port is filled in at start)."""
    env = {"DLRQ_REDIS_URL": url, "DLRQ_QUEUE": DLRQ_QUEUE}
    # As deployed: with a token (which the api's console signs in with).
    dlrq_env = {**env, "DLRQ_API_TOKEN": TOKEN}
    designs = {
        "bare Starlette (parse, 204)": (uvicorn("bench.apps.bare:app", 0), env, None),
        "naive (one RQ job per request)": (uvicorn("bench.apps.naive:app", 0), env, NAIVE_QUEUE),
        "dlrq ingest": ([python(), "-m", "dlrq", "ingest"], dlrq_env, DLRQ_QUEUE),
        DLRQ_INGEST_READERS: ([python(), "-m", "dlrq", "ingest"], dlrq_env, DLRQ_QUEUE),
    }
    if express:
        designs["Vonage docs' Express sample"] = (["node", "bench/express/server.js"], {}, None)
    return designs


def ingest_rows(url: str, express: bool, client: redis.Redis, seconds: float, rounds: int) -> list[dict[str, Any]]:
    """Each design `rounds` times, in the order A B C D, D C B A, A B C D..., each kept at its best run:
    the machine drifts over a minute by as much as some differences measured (the console on and
    off, within 5%), and later runs meet a server whose backlog (and append-only file, rewritten in
    a fork) has grown, which alone moved a late row by 25%. `runs_rps` keeps every run's rate
    (in the order they ran) and `median_rps` their median;
    `stored` counts every run's receipts, which stay queued for the worker rows."""
    designs = ingest_designs(url, express)
    names = list(designs)

    def measure(tag: int, name: str) -> dict[str, Any]:
        print(f"ingest: {name} ...", flush=True)
        argv, env, queue = designs[name]
        return run_ingest(name, argv, env, queue, client, seconds, tag * 10)  # tags below 500 (replica rows)

    order = [name for r in range(rounds) for name in (names if r % 2 == 0 else reversed(names))]
    runs = runs_by_name(order, measure)
    return [best_of(runs[name], "rps") | {"stored": sum(row["stored"] for row in runs[name])} for name in names]


def run_ingest(name: str, argv: list[str], env: dict[str, str], queue: str | None, client: redis.Redis,
               seconds: float, tag: int) -> dict[str, Any]:
    port = free_port()
    argv = [str(port) if a == "0" else a for a in argv]
    env = {**env, "PORT": str(port), "DLRQ_PORT": str(port)}
    jobs_before = client.llen(queue_key(queue)) if queue is not None else 0
    with process(argv, env, SERVER_CORE, port), (busy_readers(env) if name == DLRQ_INGEST_READERS
                                                 else nullcontext({})) as readers:
        warm_up = wrk(port, 2, tag=tag + 1)
        with measure_cost(client) as cost:
            load = wrk(port, seconds, tag=tag)
    result = {"design": name, **asdict(load), "rps": load.rps, "stored": warm_up.ok + load.ok, **readers}
    if queue is not None:
        result["receipts_per_job"] = result["stored"] / (client.llen(queue_key(queue)) - jobs_before)
    if load.ok:
        result["commands_per_receipt"] = cost[0].commands / load.ok
        result["round_trips_per_receipt"] = cost[0].round_trips / load.ok
        result["redis_us_per_receipt"] = cost[0].main_thread_seconds / load.ok * 1e6
    return result


def queue_key(name: str) -> str:
    return f"rq:queue:{name}"


def drain(name: str, argv: list[str], env: dict[str, str], client: redis.Redis, queue: str,
          receipts_per_job: float, cap: float) -> dict[str, Any]:
    """Receipts/s from the worker's first job until the queue is empty or `cap` seconds have passed."""
    key = queue_key(queue)
    initial = client.llen(key)
    if not initial:
        raise RuntimeError(f"{name}: no backlog to drain")
    polls = 0
    with measure_cost(client) as cost, process(argv, env, SERVER_CORE) as proc:
        first: tuple[float, int] | None = None
        while True:
            waiting, now = client.llen(key), time.monotonic()
            polls += 1
            if first is None and waiting < initial:
                first = (now, waiting)
            if first and (waiting == 0 or now - first[0] >= cap):
                break
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {last_words(proc)}")
            time.sleep(0.02)
    jobs = first[1] - waiting
    seconds = now - first[0]
    receipts = jobs * receipts_per_job
    return {
        "design": name, "jobs": jobs, "receipts": round(receipts), "seconds": seconds,
        "receipts_per_s": receipts / seconds,
        "commands_per_receipt": (cost[0].commands - polls) / receipts if receipts else None,
        "round_trips_per_receipt": (cost[0].round_trips - polls) / receipts if receipts else None,
    }


def run_workers(url: str, client: redis.Redis, dlrq_receipts: int, cap: float) -> list[dict]:
    env = {"DLRQ_REDIS_URL": url, "DLRQ_QUEUE": DLRQ_QUEUE}
    rq = str(Path(python()).parent / "rq")
    naive = [rq, "worker", "-S", "rq.serializers.JSONSerializer", "-u", url, "-q", NAIVE_QUEUE]
    return [
        drain("dlrq worker", [python(), "-m", "dlrq", "worker"], env, client, DLRQ_QUEUE,
              dlrq_receipts / client.llen(queue_key(DLRQ_QUEUE)), cap),
        drain("naive, RQ SimpleWorker", [*naive, "-w", "rq.worker.SimpleWorker"], env, client, NAIVE_QUEUE,
              1.0, cap),
        drain("naive, RQ Worker (forks per job)", naive, env, client, NAIVE_QUEUE, 1.0, cap),
    ]


def wait_empty(client: redis.Redis, key: str, timeout: float) -> float:
    """Seconds until nothing waits in the queue."""
    started = time.monotonic()
    while client.llen(key) and time.monotonic() - started < timeout:
        time.sleep(0.02)
    return time.monotonic() - started


def sustained(url: str, client: redis.Redis, ceiling: float, seconds: float, steps: int) -> dict[str, Any]:
    """Bisect for the highest paced rate that one ingest and one worker keep up with.

    Kept up: every answer was 2xx and the queue was empty within half a second of the
    load stopping. The rate reported is what wrk achieved, which is below the rate asked
    for: each connection pauses between a response and its next request.
    """
    env = {"DLRQ_REDIS_URL": url, "DLRQ_QUEUE": DLRQ_QUEUE}
    port = free_port()
    key = queue_key(DLRQ_QUEUE)
    low, high, best, trials = 0.0, ceiling, None, []
    with process([python(), "-m", "dlrq", "ingest"], {**env, "DLRQ_PORT": str(port)}, SERVER_CORE, port), \
            process([python(), "-m", "dlrq", "worker"], env, LOAD_CORE):
        for step in range(steps):
            rate = (low + high) / 2 if step else ceiling
            load = wrk(port, seconds, rate=rate, tag=1000 + step, core=None)
            lag = wait_empty(client, key, 30)
            kept_up = load.non_2xx == 0 and load.socket_errors == 0 and lag < 0.5
            trials.append({"target": round(rate), "achieved": round(load.rps), "p99_ms": load.p99_ms,
                           "drain_lag_s": round(lag, 2), "kept_up": kept_up})
            if kept_up:
                low, best = rate, load
            else:
                high = rate
    return {"receipts_per_s": best.rps if best else 0.0, "p99_ms": best.p99_ms if best else None, "trials": trials}


def memory_per_message(url: str, messages: int) -> dict[str, Any]:
    """used_memory growth over `messages` single-part messages with one receipt each, in a spare database."""
    client = redis.Redis.from_url(url.rsplit("/", 1)[0] + "/1")  # the URL's database wins over a db argument
    client.execute_command("FLUSHALL", "SYNC")
    time.sleep(1)  # let the server settle (lazy frees, client buffers) before the first reading
    settings = Settings()
    before = int(client.info("memory")["used_memory"])
    chunk = 1000
    for start in range(0, messages, chunk):
        receipts = [Receipt(receipt_params(i), utc_now_iso()) for i in range(start, min(messages, start + chunk))]
        apply(client, receipts, settings)
    after = int(client.info("memory")["used_memory"])
    keys = client.dbsize()
    client.execute_command("FLUSHALL", "SYNC")
    return {"messages": messages, "keys": keys, "bytes_per_message": (after - before) / messages}


def receipt_params(i: int) -> dict[str, str]:
    return {
        "msisdn": f"447700{i % 1_000_000:06d}", "to": "Vonage APIs", "network-code": "23410",
        "messageId": f"{0x0B000000_00000000 + i:016X}", "price": "0.03330000", "status": "delivered",
        "scts": "2001011400", "err-code": "0", "api-key": "abcd1234", "message-timestamp": "2020-01-01 14:00:00",
    }
