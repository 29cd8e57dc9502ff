"""The record of accepted receipts: a Redis stream written with each batch, exported as JSONL.

Each entry holds one batch: its receipts in the contract's recorded shape
({"received_at", "params"}), one JSON line each. It is added by the same Lua call that
enqueues the batch, so recording costs no round trip (one entry per batch, not per
receipt, keeps its cost small) and a receipt is recorded exactly when it is
acknowledged. The stream's ids are the times Redis took the entries, which `--since`
filters on.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

import redis

from . import keys

Command = tuple[object, ...]
FIELD = "r"
EXPORT_CHUNK = 1000


def record_commands(lines: bytes, max_batches: int, max_age: int, now: float) -> list[Command]:
    """Append a batch (JSON lines), trimmed by count and by age (both approximate: whole nodes)."""
    return [
        ("XADD", keys.RECORD, "MAXLEN", "~", max_batches, "*", FIELD, lines),
        ("XTRIM", keys.RECORD, "MINID", "~", int((now - max_age) * 1000)),
    ]


def jsonl(records: list[dict]) -> bytes:
    return "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records).encode()


def parse_since(text: str) -> int:
    """An ISO 8601 time (UTC unless it says otherwise) or epoch seconds, as a stream id's milliseconds."""
    try:
        return int(float(text) * 1000)
    except ValueError:
        pass
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def read_record(client: redis.Redis, since_ms: int = 0) -> Iterator[bytes]:
    """Every recorded receipt since `since_ms` as a JSON line, oldest first, a chunk of batches at a time."""
    start = f"{since_ms}-0"
    while True:
        entries = client.xrange(keys.RECORD, min=start, max="+", count=EXPORT_CHUNK)
        for _, fields in entries:
            yield from fields[FIELD.encode()].splitlines()
        if len(entries) < EXPORT_CHUNK:
            return
        start = "(" + entries[-1][0].decode()


def open_output(path: Path | None) -> IO[bytes]:
    if path is None:
        return io.BufferedWriter(io.FileIO(1, "w", closefd=False))
    return gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb")


def export(client: redis.Redis, out: IO[bytes], since_ms: int = 0) -> int:
    """Write the record as JSONL; return how many receipts were written."""
    count = 0
    for line in read_record(client, since_ms):
        out.write(line + b"\n")
        count += 1
    return count
