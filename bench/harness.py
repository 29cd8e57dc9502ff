"""The moving parts of a benchmark run: pinned server processes, wrk, and Redis's own counters."""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "receipt.lua"
WEBHOOK = "/webhooks/delivery-receipt"
SERVER_CORE = "0"
LOAD_CORE = "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def runs_by_name(order: Sequence[str], measure: Callable[[int, str], dict[str, Any]]
                 ) -> dict[str, list[dict[str, Any]]]:
    """Measure each name in `order` (alternating names, so that the machine's drift over a minute,
    as large as the differences measured, falls on both); each name's runs, in the order they ran."""
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for tag, name in enumerate(order):
        runs[name].append(measure(tag, name))
    return runs


def best_of(rows: Sequence[dict[str, Any]], rate: str) -> dict[str, Any]:
    """The best run (what the design can do: the machine's noise only slows a run down), with every
    run's rate and their median (what a feature costs is the typical difference between its on and
    off runs, not the difference between the luckiest of each: one fast outlier moved the console's
    cost from 0% to 6% in a run of 2026-11-30)."""
    rates = [row[rate] for row in rows]
    return max(rows, key=lambda row: row[rate]) | {f"runs_{rate}": [round(r) for r in rates],
                                                  f"median_{rate}": statistics.median(rates)}


def pinned(core: str | None, argv: list[str]) -> list[str]:
    return ["taskset", "-c", core, *argv] if core is not None else argv


@contextmanager
def server_on(client: redis.Redis, core: str) -> Iterator[None]:
    """The Redis-compatible server (local) held to `core` for the block. Left to float, it settled
    on the ingest's core in some runs and on wrk's in others, and same-core round trips are
    cheaper: two runs of one design differed by up to 25%, more than the differences measured."""
    pid = int(client.info("server")["process_id"])
    everywhere = os.sched_getaffinity(pid)
    os.sched_setaffinity(pid, {int(core)})
    try:
        yield
    finally:
        os.sched_setaffinity(pid, everywhere)


@contextmanager
def process(
    argv: list[str], env: dict[str, str], core: str | None, port: int | None = None
) -> Iterator[subprocess.Popen]:
    """Run argv (pinned to `core`), wait until it listens on `port`, stop it on the way out. Its stderr goes
    to a file (a pipe nobody reads fills up, and a process logging a warning an event blocks on it)."""
    proc = subprocess.Popen(
        pinned(core, argv), cwd=ROOT, env={**os.environ, **env},
        stdout=subprocess.DEVNULL, stderr=tempfile.TemporaryFile(), start_new_session=True,
    )
    try:
        if port is not None:
            wait_listening(proc, port)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stderr:
            proc.stderr.close()


def last_words(proc: subprocess.Popen) -> str:
    """What a process wrote to stderr, its end."""
    proc.stderr.seek(0)
    return proc.stderr.read().decode(errors="replace")[-2000:]


def wait_listening(proc: subprocess.Popen, port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}: {last_words(proc)}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args} did not listen on port {port} within {timeout} s")


@dataclass
class Load:
    """What wrk saw."""

    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def ok(self) -> int:
        return self.requests - self.non_2xx

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def wrk(port: int, seconds: float, connections: int = 32, rate: float | None = None, tag: int = 0,
        core: str | None = LOAD_CORE) -> Load:
    env = {
        **os.environ,
        "BENCH_TAG": str(tag),
        "BENCH_RATE": str(rate or 0),
        "BENCH_CONNECTIONS": str(connections),
    }
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s", "--latency", "-s", str(LUA),
            f"http://127.0.0.1:{port}{WEBHOOK}"]
    out = subprocess.run(pinned(core, argv), env=env, capture_output=True, text=True, check=True).stdout
    line = next((x for x in out.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    raw = json.loads(line[len("BENCH "):])
    return Load(raw["requests"], raw["duration_us"] / 1e6, raw["non_2xx"], raw["socket_errors"],
                raw["p50_us"] / 1000, raw["p99_us"] / 1000)


@dataclass
class Cost:
    """Redis work between two readings: commands (Lua's own included), round trips (read events),
    and seconds of its main thread (the one every command runs on)."""

    commands: int
    round_trips: int
    main_thread_seconds: float


def redis_counters(client: redis.Redis) -> tuple[int, int, float]:
    commands = sum(stat["calls"] for stat in client.info("commandstats").values())
    cpu = client.info("cpu")
    main = float(cpu.get("used_cpu_user_main_thread", cpu["used_cpu_user"])) + \
        float(cpu.get("used_cpu_sys_main_thread", cpu["used_cpu_sys"]))
    return commands, int(client.info("stats")["total_reads_processed"]), main


@contextmanager
def measure_cost(client: redis.Redis) -> Iterator[list[Cost]]:
    """Yield a list that holds the Cost once the block ends."""
    result: list[Cost] = []
    commands0, reads0, cpu0 = redis_counters(client)
    yield result
    commands1, reads1, cpu1 = redis_counters(client)
    # The two readings themselves: three INFO calls each.
    result.append(Cost(commands1 - commands0 - 3, reads1 - reads0 - 3, cpu1 - cpu0))


def python() -> str:
    return sys.executable
