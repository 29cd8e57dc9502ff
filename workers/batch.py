"""The RQ job the ingest enqueues: one batch of receipts, applied in one round trip, then reacted to.

Whatever one receipt holds touches nothing else: a receipt the worker cannot apply is kept aside
on its own, as a failed job with its reason (`dlrq failed list`, the console's Failed work), and
its batch-mates are applied exactly once all the same.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis
from rq import get_current_job
from rq.job import Job
from rq.job_lifecycle import record_job_failure
from rq.serializers import JSONSerializer

from dlrq.core import analytics, keys, records
from dlrq.core.calls import Script, run
from dlrq.core.jobs import FAILURE_TTL
from dlrq.core.receipt import InvalidReceipt, Receipt, epoch_of, history_entry, receipt_id
from dlrq.core.settings import Settings
from dlrq.core.status import FAILED, FINAL, RANK

from . import current
from .react import Window, react

APPLY = Script.load(__package__, "apply_receipts", libraries=("analytics", "records"))
RANKS = json.dumps(RANK)
LAYOUT = records.lua_config()

log = logging.getLogger("dlrq.worker")


class MalformedBatch(ValueError):
    """A job that is not a list of recorded receipts: it would fail the same way every time."""


class Unappliable(ValueError):
    """A batch of one receipt that cannot be applied (one kept aside, requeued unmended)."""


def apply_batch(records: list[dict[str, Any]]) -> dict[str, int]:
    """Idempotent: a batch run again after a crash finds every receipt already applied, raises no
    event twice (events are named by their cause) and keeps nothing aside twice."""
    job = get_current_job()
    if not isinstance(records, list):
        job.retries_left = 0
        raise MalformedBatch(f"a batch is a list of recorded receipts, not {type(records).__name__}")
    settings = current.settings()
    now = time.time()
    numbered, aside = parse_batch(records, now)
    receipts = [receipt for _, receipt in numbered]
    applied = apply(job.connection, receipts, settings, now)
    aside += [Aside(index, receipt.to_record(), reason)
              for (index, receipt), reason in zip(numbered, applied.reasons) if reason is not None]
    new = applied.outcomes.count(NEW)
    resends = applied.outcomes.count(RESEND)
    if log.isEnabledFor(logging.DEBUG):
        for (index, receipt), outcome in zip(numbered, applied.outcomes):
            log_receipt(receipt_id(job.id, index), receipt, OUTCOMES[outcome])
    if DROPPED in applied.outcomes:
        parts = sorted({r.params["messageId"] for r, o in zip(receipts, applied.outcomes) if o == DROPPED})
        log.warning("%d receipts dropped: part(s) %s already hold %d receipts or %d bytes (DLRQ_PART_MAX_*), "
                    "and they would not change its status", applied.outcomes.count(DROPPED), ", ".join(parts[:5]),
                    settings.part_max_receipts, settings.part_max_bytes)
    if aside and len(records) == 1:
        # One receipt kept aside before and requeued, still what it was: back to the failed registry as
        # it is (a batch of one is its own place aside).
        job.retries_left = 0
        raise Unappliable(aside[0].reason)
    if aside:
        keep_aside(job, aside)
    if receipts:
        react(job.connection, settings, applied.owners, applied.windows, now)
    log.debug("batch %s applied: %d new, %d resends, %d kept aside", job.id, new, resends, len(aside),
              extra={"batch": job.id, "new": new, "resends": resends, "kept_aside": len(aside)})
    return {"new": new, "resends": resends}


def log_receipt(request_id: str, receipt: Receipt, outcome: str) -> None:
    """The ingest logged the same request id when it acknowledged the receipt."""
    message_id, status = receipt.params["messageId"], receipt.params["status"]
    log.debug("receipt %s %s: message %s %s", request_id, outcome, message_id, status,
              extra={"request_id": request_id, "outcome": outcome, "message_id": message_id, "status": status})


@dataclass(frozen=True)
class Aside:
    """A receipt of a batch that cannot be applied: its place, what it holds, and why."""

    index: int
    record: Any
    reason: str


def parse_batch(records: list[Any], now: float) -> tuple[list[tuple[int, Receipt]], list[Aside]]:
    """The valid receipts with their places in the batch, and the rest with what is wrong with each."""
    numbered, aside = [], []
    for i, record in enumerate(records):
        try:
            numbered.append((i, Receipt.from_record(record, now)))
        except InvalidReceipt as exc:
            aside.append(Aside(i, record, f"{exc.code}: {exc.detail}"))
    return numbered, aside


def keep_aside(job: Job, aside: list[Aside]) -> list[str]:
    """Each receipt as a failed job of its own (named after its batch and place, so that a batch run
    again keeps nothing aside twice), with its reason: `dlrq failed requeue` once what was wrong is
    mended. Returns the ids of the jobs made."""
    connection = job.connection
    ids = [f"{job.id}-aside-{a.index}" for a in aside]
    with connection.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.exists(Job.key_for(job_id))
        exist = pipe.execute()
    made = []
    with connection.pipeline() as pipe:
        for job_id, kept, existing in zip(ids, aside, exist):
            if existing:
                continue
            held = Job.create(keys.BATCH_JOB, args=([kept.record],), id=job_id, connection=connection,
                              serializer=JSONSerializer, origin=job.origin, timeout=job.timeout,
                              failure_ttl=FAILURE_TTL, description=f"dlrq receipt {kept.index} of batch {job.id}")
            record_job_failure(held, f"kept aside: {kept.reason}. Once mended: dlrq failed requeue {job_id}", pipe)
            made.append(job_id)
        if made:
            pipe.hincrby(keys.COUNTERS, keys.COUNT_KEPT_ASIDE, len(made))
        pipe.execute()
    for job_id, kept, existing in zip(ids, aside, exist):
        if not existing:
            log.error("receipt %s kept aside as failed job %s: %s", receipt_id(job.id, kept.index), job_id,
                      kept.reason)
    return made


# What became of each receipt of a batch (apply_receipts.lua, and UNAPPLIABLE before it).
NEW, RESEND, DROPPED, BAD_RECORD, UNAPPLIABLE = 1, 0, 2, -1, -2
OUTCOMES = {NEW: "applied", RESEND: "resend", DROPPED: "dropped", BAD_RECORD: "kept aside",
            UNAPPLIABLE: "kept aside"}


@dataclass(frozen=True)
class Applied:
    outcomes: list[int]  # NEW, RESEND, DROPPED, BAD_RECORD or UNAPPLIABLE, one per receipt
    reasons: list[str | None]  # why each receipt kept aside was (None for the others)
    windows: list[Window]  # the failure-rate window of each network the batch's final receipts came from
    owners: dict[str, str | None]  # each part whose receipt failed -> the message it belongs to, if registered


@dataclass(frozen=True)
class Prepared:
    """What the apply script needs of one receipt: its part's key, what is known of it, and the receipt
    as its part keeps it (records.receipt_row)."""

    key: str
    about: list[object]
    entry: str


def prepare(receipt: Receipt, now: float) -> Prepared:
    params = receipt.params
    network, status = params.get("network-code", ""), params["status"]
    counted = status in FINAL and network != ""
    received = received_epoch(receipt.received_at, now)
    about: list[object] = [
        keys.network_total(network) if counted else "",
        keys.network_failed(network) if counted else "",
        1 if counted and status in FAILED else 0,
        received,
        time.strftime(analytics.HOUR_FORMAT, time.gmtime(received)),
        keys.by_ref(params["client-ref"]) if params.get("client-ref") else "",
        params["messageId"] if params.get("client-ref") else "",
    ]
    row = records.receipt_row(analysed(receipt), received)
    return Prepared(keys.part(params["messageId"]), about, json.dumps(row))


def apply(connection: redis.Redis, receipts: list[Receipt], settings: Settings, now: float | None = None) -> Applied:
    """Apply receipts and count their networks' final receipts in one atomic call, which also reads
    what the failed parts belong to (the reaction's first read, without a round trip of its own).

    A receipt that cannot even be prepared for it (nothing the ingest accepts, but records come from
    elsewhere too) is left out of the call, with its reason."""
    now = time.time() if now is None else now
    prepared: list[Prepared | None] = []
    reasons: list[str | None] = []
    for receipt in receipts:
        try:
            prepared.append(prepare(receipt, now))
            reasons.append(None)
        except Exception as exc:  # whatever it is, it is this receipt's alone
            prepared.append(None)
            reasons.append(f"cannot be applied: {type(exc).__name__}: {exc}")
    ready = [(r, p) for r, p in zip(receipts, prepared) if p is not None]
    outcomes, windows, bad, owners = _run_apply(connection, ready, settings, now) if ready else ([], [], {}, {})
    merged, ready_outcomes = [], iter(outcomes)
    for i, p in enumerate(prepared):
        if p is None:
            merged.append(UNAPPLIABLE)
            continue
        outcome = next(ready_outcomes)
        merged.append(outcome)
        if outcome == BAD_RECORD:
            part = receipts[i].params["messageId"]
            reasons[i] = f"its part's record ({keys.part(part)}) is bad: {bad[part]}; repair or delete it"
    return Applied(merged, reasons, windows, owners)


def _run_apply(connection: redis.Redis, ready: list[tuple[Receipt, Prepared]], settings: Settings, now: float
               ) -> tuple[list[int], list[Window], dict[str, str], dict[str, str | None]]:
    buckets = max(1, settings.failure_rate_window // keys.NETWORK_BUCKET)
    current_bucket = int(now // keys.NETWORK_BUCKET)
    window = [keys.network_window(b) for b in range(current_bucket - buckets + 1, current_bucket + 1)]
    receipts = [r for r, _ in ready]
    networks = {p.about[0]: r.params["network-code"] for r, p in ready if p.about[0]}
    failed = failed_parts(receipts)
    first = {}
    for place, receipt in enumerate(receipts, 1):
        first.setdefault(receipt.params["messageId"], place)
    outcomes, raw, bad, owners, (errors, error) = run(connection, APPLY(
        keys=[
            *(p.key for _, p in ready),
            keys.COUNTERS,
            *keys.rates(now),
            *(keys.owner(part) for part in failed),
            *window,
        ],
        args=[
            len(ready),
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
            analytics.lua_config(settings),
            json.dumps([first[part] for part in failed]),
            LAYOUT,
            json.dumps([p.about for _, p in ready]),
            *(p.entry for _, p in ready),
        ],
    ))
    if errors:
        # A shared key an operator gave another type, or a sum that would overflow: those counts only.
        log.warning("applying a batch, Redis refused %d of its counting calls (the receipts are applied): %s",
                    errors, _text(error))
        connection.hincrby(keys.COUNTERS, keys.COUNT_REFUSED_COUNTS, int(errors))
    windows = [Window(networks[_text(raw[i])], int(raw[i + 1]), int(raw[i + 2])) for i in range(0, len(raw), 3)]
    reasons = {receipts[int(bad[i])].params["messageId"]: _text(bad[i + 1]) for i in range(0, len(bad), 2)}
    owned_by = {part: part if owner == 1 else _text(owner) or None for part, owner in zip(failed, owners)}
    return list(outcomes), windows, reasons, owned_by


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
    received = epoch_of(received_at)
    return fallback if received is None else received


def failed_parts(receipts: list[Receipt]) -> list[str]:
    """Parts whose receipt may have failed their message (resends too: a re-run must still react)."""
    return list(dict.fromkeys(r.params["messageId"] for r in receipts if r.params["status"] in FAILED))
