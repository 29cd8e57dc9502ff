"""Every Redis key, hash field, counter and job-function name dlrq owns, named once (RQ names its own).

Lua scripts never build a name: the caller passes each key as KEYS and each field or
prefix as ARGV, so that this module is the only place a name is spelled.
"""

PREFIX = "dlrq:"

# Job functions, by the dotted paths RQ stores in each job (keep them importable across upgrades).
BATCH_JOB = "workers.batch.apply_batch"
DELIVER_JOB = "workers.handlers.deliver"

# When registered messages' receipts are due (receipt_missing is judged then): a list of logical ids
# per DUE_BUCKET seconds of deadlines, in the order registered (due(bucket)), and the sorted set DUE
# of those buckets by their start. A message registered again (a retry) is in a later bucket too.
DUE = f"{PREFIX}due"
DUE_BUCKET = 60
# The sorted set of dlrq 0.1-0.2 (logical ids scored by deadline): its members are moved into the
# lists by the first sweep after an upgrade.
DEADLINES = f"{PREFIX}deadlines"
# Sorted set of newly registered messages (logical ids) whose events are to be evaluated at
# once: receipts that came first, or a part refused at send time, may have failed them.
EVALUATE = f"{PREFIX}evaluate"
# Held by the worker sweeping EVALUATE and DEADLINES (its name), so that one sweeps at a time.
SWEEPING = f"{PREFIX}sweeping"
# Stream of every accepted batch: its receipts as JSON lines ({"received_at", "params"}), compressed
# (record.pack) in field RECORD_ZLIB; entries written by dlrq 0.2 and earlier hold them plain in RECORD_FIELD.
RECORD = f"{PREFIX}record"
RECORD_ZLIB = "z1"
RECORD_FIELD = "r"
# List of the latest alerts raised (JSON, newest first), ALERTS_KEPT of them: the console's.
ALERTS = f"{PREFIX}alerts"
ALERTS_KEPT = 100
# Written by /readyz: the queue is writable only if this is.
READY = f"{PREFIX}ready"

# Hash of counters every process adds to: one total for the whole deployment, which
# /metrics and `dlrq stats` read.
COUNTERS = f"{PREFIX}counters"
COUNT_BATCHES = "batches"
COUNT_NEW = "receipts:new"
COUNT_RESEND = "receipts:resend"
COUNT_DROPPED = "receipts:dropped"  # a part held the most receipts or bytes it may
COUNT_KEPT_ASIDE = "receipts:kept_aside"  # a receipt the worker could not apply, kept as a failed job of its own
COUNT_REFUSED_COUNTS = "counts:refused"  # a counting call Redis refused (a shared key of another type, an overflow)
COUNT_RECORD_SHED = "record:shed"  # record entries (batches) shed to make room under memory pressure
COUNT_STATUS = "status:"  # + the status a part moved to
COUNT_EVENTS = "events:"  # + the event's kind
COUNT_HANDLER = "handler:"  # + the handler's name, ":", the call's outcome (ok, error)

# Throughput: a hash per bucket of each size (10 s, 5 min), fields accepted (by the ingest), new and
# resend (by the workers), kept RATE_TTL seconds, for `dlrq stats` and the console.
RATE_BUCKETS = (10, 300)
RATE_BUCKET = RATE_BUCKETS[0]
RATE_TTL = 90_000
RATE_ACCEPTED = "accepted"
RATE_NEW = "new"
RATE_RESEND = "resend"

# Failure rate: a hash per NETWORK_BUCKET seconds, two fields per network (final receipts, failed ones).
NETWORK_BUCKET = 10

# Analytics: one hash per dimension and hour (the prefix, then the hour "2026-11-25T17"), one set
# per hour of the values counted by name of each dimension whose values a sender chooses (the
# rest count as "(other)"), and the Prometheus counters of outcomes and time to receipt, whose
# networks are those of the set ANALYTICS_LABELS.
ANALYTICS = f"{PREFIX}an:"
ANALYTICS_REFS = f"{ANALYTICS}refs:"
ANALYTICS_NETWORKS = f"{ANALYTICS}networks:"
ANALYTICS_ERR_CODES = f"{ANALYTICS}codes:"
ANALYTICS_LABELS = f"{ANALYTICS}labels"
OUTCOMES = f"{PREFIX}outcomes"
TIME_TO_RECEIPT = f"{PREFIX}latency"

# Fields of a message hash, as dlrq 0.1-0.2 wrote it (records.py reads it, and writes its own layout).
META = "meta"
ATTEMPTS = "attempts"
ATTEMPT = "attempt:"  # + the attempt's number (1, 2, ...): its parts, as JSON
ATTEMPT_KEY = "key:"  # + the first part's id of the send registered as that attempt: its number
ALERT = "alert:"  # + the event's id: the alert, as JSON


def count_events(kind: str) -> str:
    return f"{COUNT_EVENTS}{kind}"


def count_handler(handler: str, outcome: str) -> str:
    """Handler calls by handler name and outcome (ok, error)."""
    return f"{COUNT_HANDLER}{handler}:{outcome}"


def analytics_prefix(dimension: str) -> str:
    return f"{ANALYTICS}{dimension}:"


def analytics(dimension: str, hour: str) -> str:
    return f"{analytics_prefix(dimension)}{hour}"


def rate(bucket: int, size: int = RATE_BUCKET) -> str:
    """The throughput hash of bucket number `bucket` (time // size)."""
    return f"{PREFIX}rate:{size}:{bucket}"


def rates(now: float) -> list[str]:
    """This moment's throughput hashes, one per size."""
    return [rate(int(now // size), size) for size in RATE_BUCKETS]


def by_ref(client_ref: str) -> str:
    """Sorted set of the messages and parts sent with a client-ref (their ids; dlrq 0.1-0.2 named them by
    key), by time: the console's search."""
    return f"{PREFIX}ref:{client_ref}"


def network_window(bucket: int) -> str:
    """Hash of the networks' final receipts in one failure-rate bucket."""
    return f"{PREFIX}net:{bucket}"


def network_total(network_code: str) -> str:
    return f"{network_code}:total"


def network_failed(network_code: str) -> str:
    return f"{network_code}:failed"


def part(message_id: str) -> str:
    """One part's record (records.py): its distinct receipts, which are also its resend filter, and
    the message it belongs to."""
    return f"{PREFIX}part:{message_id}"


def message(logical_id: str) -> str:
    """A registered message's record (records.py); a hash of META, ATTEMPTS, ATTEMPT<n>, ATTEMPT_KEY<id>
    and ALERT<id> fields if dlrq 0.1-0.2 wrote it."""
    return f"{PREFIX}msg:{logical_id}"


def indexed_id(member: str | bytes) -> str:
    """The id a client-ref's index holds, whether as an id or, as dlrq 0.1-0.2 wrote it, as a key."""
    text = member.decode() if isinstance(member, bytes) else member
    for prefix in (part(""), message("")):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def due_bucket(deadline: float) -> int:
    return int(deadline // DUE_BUCKET)


def due(bucket: int | str) -> str:
    """The list of messages whose latest deadline, when registered, fell in that bucket."""
    return f"{DUE}:{bucket}"


def owner(message_id: str) -> str:
    """The logical id of the registered message a part belongs to, as dlrq 0.1-0.2 kept it (a part's
    record says it now): read, never written, until the last of them expires with its message."""
    return f"{PREFIX}owner:{message_id}"


def event(event_id: str) -> str:
    """Guard of a raised event: while it exists, the same event is not raised again."""
    return f"{PREFIX}event:{event_id}"


# A handler call's marker holds when it was made, or this and when it was not (its event was moot).
SUPERSEDED = "superseded "


def delivered(job_id: str) -> str:
    """Marks a handler call that succeeded, so that running its job again does not call again."""
    return f"{PREFIX}delivered:{job_id}"


def cooldown(kind: str, subject: str) -> str:
    """Guard of an episode (e.g. one network's failure rate): one event until it expires."""
    return f"{PREFIX}cooldown:{kind}:{subject}"
