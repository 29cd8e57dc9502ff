"""The RQ job the ingest enqueues: one batch of receipts, applied in one round trip, then reacted to."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from rq import get_current_job

from ingest import keys
from ingest.receipt import Receipt, history_entry
from ingest.settings import Settings, get_settings
from ingest.status import FAILED, FINAL

from . import scripts
from .react import react

log = logging.getLogger("dlrq.worker")


def apply_batch(records: list[dict[str, Any]]) -> dict[str, int]:
    """Idempotent: a batch run again after a crash finds every receipt already applied,
    and raises no event twice (events are named by their cause)."""
    if not isinstance(records, list):
        raise TypeError(f"a batch is a list of recorded receipts, not {type(records).__name__}")
    receipts = [Receipt.from_record(record) for record in records]
    settings = get_settings()
    connection = get_current_job().connection
    new = apply(connection, receipts, settings)
    react(connection, settings, failed_parts(receipts), final_networks(receipts), time.time())
    log.debug("batch applied: %d new, %d resends", new, len(receipts) - new)
    return {"new": new, "resends": len(receipts) - new}


def apply(connection: redis.Redis, receipts: list[Receipt], settings: Settings, now: float | None = None) -> int:
    """Apply receipts in one atomic call; return how many were new (not resends)."""
    now = time.time() if now is None else now
    applied = scripts.apply_receipts(
        keys=[keys.part(r.params["messageId"]) for r in receipts],
        args=[
            settings.record_ttl,
            keys.NETWORK_COUNTS,
            int(now // keys.NETWORK_BUCKET),
            settings.failure_rate_window + keys.NETWORK_BUCKET,
            *(json.dumps(history_entry(r)) for r in receipts),
        ],
        client=connection,
    )
    return sum(applied)


def failed_parts(receipts: list[Receipt]) -> list[str]:
    """Parts whose receipt may have failed their message (resends too: a re-run must still react)."""
    return list(dict.fromkeys(r.params["messageId"] for r in receipts if r.params["status"] in FAILED))


def final_networks(receipts: list[Receipt]) -> list[str]:
    return list(dict.fromkeys(
        r.params["network-code"] for r in receipts if r.params["status"] in FINAL and r.params.get("network-code")
    ))
