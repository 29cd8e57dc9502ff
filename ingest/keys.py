"""Every Redis key dlrq owns, named in one place (RQ names its own)."""

PREFIX = "dlrq:"
# Sorted set: "<attempt>:<logical id>" scored by the time its receipts are due (receipt_missing);
# attempt 0 asks for the message's events to be evaluated (its registration may have failed it).
DEADLINES = f"{PREFIX}deadlines"
# Stream of every accepted receipt, {"received_at", "params"} as JSON in field "r".
RECORD = f"{PREFIX}record"
# Seconds per failure-rate bucket.
NETWORK_BUCKET = 10
# Hash of counters every process adds to (receipts:new|resend, batches, status:<status>,
# events:<kind>, handler:<name>:ok|error): one total for the whole deployment, which
# /metrics and `dlrq stats` read.
COUNTERS = f"{PREFIX}counters"
# Throughput: a hash per RATE_BUCKET seconds (accepted by the ingest; new and resend by
# the workers), kept RATE_TTL seconds, for `dlrq stats`.
RATE_BUCKET = 10
RATE_TTL = 3600
# Written by /readyz: the queue is writable only if this is.
READY = f"{PREFIX}ready"


def rate(bucket: int) -> str:
    return f"{PREFIX}rate:{bucket}"


def part(message_id: str) -> str:
    """JSON of one part: its distinct receipts, which are also its resend filter."""
    return f"{PREFIX}part:{message_id}"


def message(logical_id: str) -> str:
    """Hash of a registered message: meta, attempts, attempt:<n>, key:<first part id>, alert:<id>."""
    return f"{PREFIX}msg:{logical_id}"


def owner(message_id: str) -> str:
    """The logical id of the registered message a part belongs to."""
    return f"{PREFIX}owner:{message_id}"


def event(event_id: str) -> str:
    """Guard of a raised event: while it exists, the same event is not raised again."""
    return f"{PREFIX}event:{event_id}"


def delivered(job_id: str) -> str:
    """Marks a handler call that succeeded, so that running its job again does not call again."""
    return f"{PREFIX}delivered:{job_id}"


def cooldown(kind: str, subject: str) -> str:
    """Guard of an episode (e.g. one network's failure rate): one event until it expires."""
    return f"{PREFIX}cooldown:{kind}:{subject}"


NETWORK_COUNTS = f"{PREFIX}net:"


def network_counts(network_code: str, bucket: int) -> str:
    """Hash of one network's final receipts in one time bucket: total, failed (written by apply_receipts.lua)."""
    return f"{NETWORK_COUNTS}{network_code}:{bucket}"


def deadline_member(attempt: int, logical_id: str) -> str:
    return f"{attempt}:{logical_id}"


def parse_deadline_member(member: str) -> tuple[int, str]:
    attempt, _, logical_id = member.partition(":")
    return int(attempt), logical_id
