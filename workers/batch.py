"""The RQ job the ingest enqueues: one batch of receipts, applied in one round trip, then reacted to."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from rq import get_current_job
from rq.job import Job
from rq.job_lifecycle import record_job_failure
from rq.serializers import JSONSerializer

from dlrq.core import analytics, keys
from dlrq.core.calls import Script, run
from dlrq.core.jobs import FAILURE_TTL
from dlrq.core.receipt import InvalidReceipt, Receipt, history_entry, receipt_id
from dlrq.core.settings import Settings
from dlrq.core.status import FAILED, FINAL, RANK

from . import current
from .react import Window, react

APPLY = Script.load(__package__, "apply_receipts", libraries=("analytics",))
RANKS = json.dumps(RANK)

log = logging.getLogger("dlrq.worker")


class MalformedBatch(ValueError):
    """A job that is not a batch of recorded receipts: it would fail the same way every time."""


def apply_batch(records: list[dict[str, Any]]) -> dict[str, int]:
    """Idempotent: a batch run again after a crash finds every receipt already applied,
    and raises no event twice (events are named by their cause).

    A malformed batch (put on the queue by something other than dlrq) applies what is
    valid in it, then fails at once, without RQ's retries, naming what is not.
    """
    job = get_current_job()
    numbered, problems = parse_batch(records)
    receipts = [receipt for _, receipt in numbered]
    new = 0
    if receipts:
        settings = current.settings()
        applied = apply(job.connection, receipts, settings)
        new = applied.outcomes.count(NEW)
        if log.isEnabledFor(logging.DEBUG):
            for (index, receipt), outcome in zip(numbered, applied.outcomes):
                log_receipt(receipt_id(job.id, index), receipt, OUTCOMES[outcome])
        if DROPPED in applied.outcomes:
            parts = sorted({r.params["messageId"] for r, o in zip(receipts, applied.outcomes) if o == DROPPED})
            log.warning("%d receipts dropped: part(s) %s already hold %d receipts or %d bytes (DLRQ_PART_MAX_*)",
                        applied.outcomes.count(DROPPED), ", ".join(parts[:5]), settings.part_max_receipts,
                        settings.part_max_bytes)
        if applied.bad:
            quarantine(job, receipts, applied)
        react(job.connection, settings, applied.owners, applied.windows, time.time())
    if problems:
        job.retries_left = 0
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise MalformedBatch("; ".join(problems[:10]) + more)
    log.debug("batch %s applied: %d new, %d resends", job.id, new, len(receipts) - new,
             extra={"batch": job.id, "new": new, "resends": len(receipts) - new})
    return {"new": new, "resends": len(receipts) - new}


def log_receipt(request_id: str, receipt: Receipt, outcome: str) -> None:
    """The ingest logged the same request id when it acknowledged the receipt."""
    message_id, status = receipt.params["messageId"], receipt.params["status"]
    log.debug("receipt %s %s: message %s %s", request_id, outcome, message_id, status,
              extra={"request_id": request_id, "outcome": outcome, "message_id": message_id, "status": status})


def parse_batch(records: Any) -> tuple[list[tuple[int, Receipt]], list[str]]:
    """The valid receipts with their places in the batch, and what is wrong with the rest."""
    if not isinstance(records, list):
        return [], [f"a batch is a list of recorded receipts, not {type(records).__name__}"]
    numbered, problems = [], []
    for i, record in enumerate(records):
        try:
            numbered.append((i, Receipt.from_record(record)))
        except InvalidReceipt as exc:
            problems.append(f"record {i}: {exc.code}: {exc.detail}")
    return numbered, problems


# What became of each receipt of a batch (apply_receipts.lua).
NEW, RESEND, DROPPED, BAD_RECORD = 1, 0, 2, -1
OUTCOMES = {NEW: "applied", RESEND: "resend", DROPPED: "dropped", BAD_RECORD: "kept aside"}


@dataclass(frozen=True)
class Applied:
    outcomes: list[int]  # NEW, RESEND, DROPPED or BAD_RECORD, one per receipt
    windows: list[Window]  # the failure-rate window of each network the batch's final receipts came from
    bad: dict[str, str]  # part id -> what is wrong with its stored record (its receipts were not applied)
    owners: dict[str, str | None]  # each part whose receipt failed -> the message it belongs to, if registered


def quarantine(job: Job, receipts: list[Receipt], applied: Applied) -> str:
    """Keep the receipts of parts whose stored record is bad as a failed job of their own, with the
    reason, while the rest of the batch stands applied: `dlrq failed requeue` once the record is mended."""
    kept = [r.to_record() for r, o in zip(receipts, applied.outcomes) if o == BAD_RECORD]
    reason = "; ".join(f"part {part}: its record ({keys.part(part)}) is bad: {why}"
                       for part, why in applied.bad.items())
    aside = Job.create(keys.BATCH_JOB, args=(kept,), connection=job.connection, serializer=JSONSerializer,
                       origin=job.origin, timeout=job.timeout, failure_ttl=FAILURE_TTL,
                       description=f"dlrq receipts kept aside from batch {job.id}")
    with job.connection.pipeline() as pipe:
        record_job_failure(aside, f"{reason}. Repair or delete the record, then: dlrq failed requeue {aside.id}", pipe)
        pipe.execute()
    log.error("%d receipts kept aside as failed job %s: %s", len(kept), aside.id, reason)
    return aside.id


def apply(connection: redis.Redis, receipts: list[Receipt], settings: Settings, now: float | None = None) -> Applied:
    """Apply receipts and count their networks' final receipts in one atomic call, which also reads
    what the failed parts belong to (the reaction's first read, without a round trip of its own)."""
    now = time.time() if now is None else now
    buckets = max(1, settings.failure_rate_window // keys.NETWORK_BUCKET)
    current_bucket = int(now // keys.NETWORK_BUCKET)
    window = [keys.network_window(b) for b in range(current_bucket - buckets + 1, current_bucket + 1)]
    entries: list[str] = []
    about: list[list[object]] = []
    networks: dict[str, str] = {}
    for r in receipts:
        network, status = r.params.get("network-code", ""), r.params["status"]
        counted = status in FINAL and network != ""
        if counted:
            networks[keys.network_total(network)] = network
        received = received_epoch(r.received_at, now)
        entries.append(json.dumps(analysed(r)))
        about.append([
            keys.network_total(network) if counted else "",
            keys.network_failed(network) if counted else "",
            1 if counted and status in FAILED else 0,
            received,
            time.strftime(analytics.HOUR_FORMAT, time.gmtime(received)),
            keys.by_ref(r.params["client-ref"]) if r.params.get("client-ref") else "",
        ])
    failed = failed_parts(receipts)
    outcomes, raw, bad, owners = run(connection, APPLY(
        keys=[
            *(keys.part(r.params["messageId"]) for r in receipts),
            keys.COUNTERS,
            *keys.rates(now),
            *(keys.owner(part) for part in failed),
            *window,
        ],
        args=[
            len(receipts),
            settings.record_ttl,
            (buckets + 1) * keys.NETWORK_BUCKET,
            keys.RATE_TTL,
            RANKS,
            settings.part_max_receipts,
            settings.part_max_bytes,
            keys.COUNT_BATCHES,
            keys.COUNT_NEW,
            keys.COUNT_RESEND,
            keys.COUNT_DROPPED,
            keys.COUNT_STATUS,
            keys.RATE_NEW,
            keys.RATE_RESEND,
            analytics.lua_config(settings.analytics_retention, settings.analytics_max_refs),
            len(failed),
            json.dumps(about),
            *entries,
        ],
    ))
    windows = [Window(networks[raw[i].decode()], int(raw[i + 1]), int(raw[i + 2])) for i in range(0, len(raw), 3)]
    reasons = {receipts[int(bad[i])].params["messageId"]: _text(bad[i + 1]) for i in range(0, len(bad), 2)}
    owned_by = {part: _text(owner) or None for part, owner in zip(failed, owners)}
    return Applied(list(outcomes), windows, reasons, owned_by)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def analysed(receipt: Receipt) -> dict[str, object]:
    """What a part keeps of a receipt, with what analytics need of it computed once: country, cost."""
    entry: dict[str, object] = dict(history_entry(receipt))
    entry["_country"] = analytics.country(receipt.params.get("msisdn"))
    entry["_cost"] = analytics.price_units(receipt.params.get("price"))
    return entry


def received_epoch(received_at: str, fallback: float) -> float:
    """When a receipt was received: recorded receipts carry it (ISO 8601); replayed ones from elsewhere may not."""
    try:
        return datetime.fromisoformat(received_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return fallback


def failed_parts(receipts: list[Receipt]) -> list[str]:
    """Parts whose receipt may have failed their message (resends too: a re-run must still react)."""
    return list(dict.fromkeys(r.params["messageId"] for r in receipts if r.params["status"] in FAILED))
