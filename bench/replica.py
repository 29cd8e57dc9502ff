"""A replica of the benchmark's server, and the ingest measured beside it with and without
acknowledging only what the replica has."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from dlrq.cli.embedded import binary

from .harness import best_of, free_port, pinned, runs_by_name
from .run import run_ingest


@contextmanager
def replica_of(primary: redis.Redis, data_dir: Path, core: str) -> Iterator[None]:
    """Running on `core`, and confirming writes (WAIT), until the block ends."""
    primary_port = primary.connection_pool.connection_kwargs["port"]
    port = free_port()
    argv = [str(binary()), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--replicaof", "127.0.0.1", str(primary_port)]
    proc = subprocess.Popen(pinned(core, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            primary.set("bench:replica", time.time())
            if int(primary.execute_command("WAIT", 1, 200)) >= 1:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not catch up")
        yield
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def quick_acks() -> Iterator[bool]:
    """The loopback routes with `quickack` for the block (True if they could be changed: root, iproute2).

    A replica's link to its primary has Nagle's algorithm on (Valkey 9.1.2 and Redis 7.0 set no
    TCP_NODELAY on it), so an ACK the replica sends right after its once-a-second one waits for the
    primary's delayed TCP acknowledgement: 40 ms on Linux. `quickack` on the primary's route to its
    replicas is the host setting the README's HA section prescribes; here both ends are loopback.
    """
    shown = subprocess.run(["ip", "route", "show", "table", "local"], capture_output=True, text=True) \
        if shutil.which("ip") else None
    loopback = [line.split() for line in (shown.stdout if shown else "").splitlines()
                if line.startswith("local 127.") and " dev lo " in line and "quickack" not in line]
    changed = []
    for route in loopback:
        if subprocess.run(["ip", "route", "change", *route, "table", "local", "quickack", "1"],
                          capture_output=True).returncode == 0:
            changed.append(route)
    try:
        yield bool(changed)
    finally:
        for route in changed:  # `change` replaces every attribute: the route as it was shown
            subprocess.run(["ip", "route", "change", *route, "table", "local"], check=True)


def with_and_without_wait(argv: list[str], env: dict[str, str], queue: str | None, client: redis.Redis,
                          seconds: float, names: tuple[str, str], tag: int) -> list[dict[str, Any]]:
    """The ingest with the replica attached, DLRQ_ACK_REPLICAS=0 and 1 (`names`), in the order 0, 1, 1,
    0, 0, 1 (the machine drifts over a minute by as much as the difference measured: two runs of one
    design here have differed by 20%), compared by their medians; `stored` counts every run's
    receipts, which stay queued for the worker rows."""
    def measure(turn: int, name: str) -> dict[str, Any]:
        replicas = str(names.index(name))
        return run_ingest(name, argv, {**env, "DLRQ_ACK_REPLICAS": replicas}, queue, client, seconds,
                          tag + 2 * turn)

    without, with_wait = names
    runs = runs_by_name((without, with_wait, with_wait, without, without, with_wait), measure)
    return [best_of(runs[name], "rps") | {"stored": sum(row["stored"] for row in runs[name])} for name in names]
