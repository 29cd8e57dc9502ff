"""The record of accepted receipts: a Redis stream written with each batch.

Each entry holds one batch: its receipts in the contract's recorded shape
({"received_at", "params"}), one JSON line each. It is added by the same Lua call that
enqueues the batch, so recording costs no round trip (one entry per batch, not per
receipt, keeps its cost small) and a receipt is recorded exactly when it is
acknowledged. The stream's ids are the times Redis took the entries.
"""

from __future__ import annotations

import json
from typing import Any

from . import keys

Command = tuple[object, ...]
_COMPACT = json.JSONEncoder(separators=(",", ":"))  # json.dumps would build one per call


def record_commands(lines: bytes, max_batches: int, max_age: int, now: float) -> list[Command]:
    """Append a batch (JSON lines), trimmed by count and by age (both approximate: whole nodes)."""
    return [
        ("XADD", keys.RECORD, "MAXLEN", "~", max_batches, "*", keys.RECORD_FIELD, lines),
        ("XTRIM", keys.RECORD, "MINID", "~", int((now - max_age) * 1000)),
    ]


def jsonl(records: list[dict[str, Any]]) -> bytes:
    encode = _COMPACT.encode
    return "".join([encode(record) + "\n" for record in records]).encode()
