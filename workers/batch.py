"""The RQ job the ingest enqueues: one batch of receipts, applied in one round trip."""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from rq import get_current_job

from ingest import keys
from ingest.receipt import Receipt, history_entry
from ingest.settings import get_settings

from . import scripts

log = logging.getLogger("dlrq.worker")


def apply_batch(records: list[dict[str, Any]]) -> dict[str, int]:
    """Idempotent: a batch run again after a crash finds every receipt already applied."""
    if not isinstance(records, list):
        raise TypeError(f"a batch is a list of recorded receipts, not {type(records).__name__}")
    receipts = [Receipt.from_record(record) for record in records]
    new = apply(get_current_job().connection, receipts, get_settings().record_ttl)
    log.debug("batch applied: %d new, %d resends", new, len(receipts) - new)
    return {"new": new, "resends": len(receipts) - new}


def apply(connection: redis.Redis, receipts: list[Receipt], ttl: int) -> int:
    """Apply receipts in one atomic call; return how many were new (not resends)."""
    applied = scripts.apply_receipts(
        keys=[keys.part(r.params["messageId"]) for r in receipts],
        args=[ttl, *(json.dumps(history_entry(r)) for r in receipts)],
        client=connection,
    )
    return sum(applied)
