"""The RQ job the ingest enqueues: one batch of receipts, applied in one round trip, then reacted to."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis
from rq import get_current_job

from ingest import keys
from ingest.receipt import Receipt, history_entry
from ingest.settings import Settings, get_settings
from ingest.status import FAILED

from . import scripts
from .react import Window, react

log = logging.getLogger("dlrq.worker")


def apply_batch(records: list[dict[str, Any]]) -> dict[str, int]:
    """Idempotent: a batch run again after a crash finds every receipt already applied,
    and raises no event twice (events are named by their cause)."""
    if not isinstance(records, list):
        raise TypeError(f"a batch is a list of recorded receipts, not {type(records).__name__}")
    receipts = [Receipt.from_record(record) for record in records]
    settings = get_settings()
    connection = get_current_job().connection
    applied = apply(connection, receipts, settings)
    new = sum(applied.flags)
    react(connection, settings, failed_parts(receipts), applied.windows, time.time())
    log.debug("batch applied: %d new, %d resends", new, len(receipts) - new)
    return {"new": new, "resends": len(receipts) - new}


@dataclass(frozen=True)
class Applied:
    flags: list[int]  # 1 for a new receipt, 0 for a resend
    windows: list[Window]  # the failure-rate window of each network the batch's final receipts came from


def apply(connection: redis.Redis, receipts: list[Receipt], settings: Settings, now: float | None = None) -> Applied:
    """Apply receipts and count them per network in one atomic call."""
    now = time.time() if now is None else now
    buckets = max(1, settings.failure_rate_window // keys.NETWORK_BUCKET)
    flags, raw = scripts.apply_receipts(
        keys=[keys.part(r.params["messageId"]) for r in receipts],
        args=[
            settings.record_ttl,
            keys.NETWORK_COUNTS,
            int(now // keys.NETWORK_BUCKET),
            buckets,
            (buckets + 1) * keys.NETWORK_BUCKET,
            *(json.dumps(history_entry(r)) for r in receipts),
        ],
        client=connection,
    )
    windows = [Window(raw[i].decode(), int(raw[i + 1]), int(raw[i + 2])) for i in range(0, len(raw), 3)]
    return Applied(list(flags), windows)


def failed_parts(receipts: list[Receipt]) -> list[str]:
    """Parts whose receipt may have failed their message (resends too: a re-run must still react)."""
    return list(dict.fromkeys(r.params["messageId"] for r in receipts if r.params["status"] in FAILED))
