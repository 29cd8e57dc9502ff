"""A replica of the benchmark's server, for the row that acknowledges only what a replica has."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from dlrq.cli.embedded import binary

from .harness import free_port


@contextmanager
def replica_of(primary: redis.Redis, primary_port: int, data_dir: Path) -> Iterator[None]:
    """Running, and confirming writes (WAIT), until the block ends."""
    port = free_port()
    proc = subprocess.Popen([str(binary()), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
                             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                             "--replicaof", "127.0.0.1", str(primary_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
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
