"""A replica of the benchmark's server, and the ingest measured beside it with and without
acknowledging only what the replica has."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from dlrq.cli.embedded import binary

from .harness import best_of, free_port, pinned, runs_by_name
from .report import DLRQ_INGEST_REPLICA, DLRQ_INGEST_REPLICATED
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


def with_and_without_wait(argv: list[str], env: dict[str, str], queue: str | None, client: redis.Redis,
                          seconds: float) -> list[dict[str, Any]]:
    """The ingest with the replica attached, DLRQ_ACK_REPLICAS=0 and 1, in the order 0, 1, 1, 0, 0, 1
    (the machine drifts over a minute by as much as the difference measured: two runs of one design
    here have differed by 20%), compared by their medians; `stored` counts every run's receipts,
    which stay queued for the worker rows."""
    def measure(tag: int, name: str) -> dict[str, Any]:
        replicas = "1" if name == DLRQ_INGEST_REPLICATED else "0"
        return run_ingest(name, argv, {**env, "DLRQ_ACK_REPLICAS": replicas}, queue, client, seconds, 500 + 2 * tag)

    order = (DLRQ_INGEST_REPLICA, DLRQ_INGEST_REPLICATED, DLRQ_INGEST_REPLICATED, DLRQ_INGEST_REPLICA,
             DLRQ_INGEST_REPLICA, DLRQ_INGEST_REPLICATED)
    runs = runs_by_name(order, measure)
    return [best_of(runs[name], "rps") | {"stored": sum(row["stored"] for row in runs[name])}
            for name in (DLRQ_INGEST_REPLICA, DLRQ_INGEST_REPLICATED)]
