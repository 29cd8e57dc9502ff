"""Every Redis key dlrq owns, named in one place (RQ names its own)."""

PREFIX = "dlrq:"
# Sorted set: "<attempt>:<logical id>" scored by the time its receipts are due (receipt_missing).
DEADLINES = f"{PREFIX}deadlines"


def part(message_id: str) -> str:
    """JSON of one part: its distinct receipts, which are also its resend filter."""
    return f"{PREFIX}part:{message_id}"


def message(logical_id: str) -> str:
    """Hash of a registered message: meta, attempts, attempt:<n>, key:<first part id>, alert:<id>."""
    return f"{PREFIX}msg:{logical_id}"


def owner(message_id: str) -> str:
    """The logical id of the registered message a part belongs to."""
    return f"{PREFIX}owner:{message_id}"


def deadline_member(attempt: int, logical_id: str) -> str:
    return f"{attempt}:{logical_id}"


def parse_deadline_member(member: str) -> tuple[int, str]:
    attempt, _, logical_id = member.partition(":")
    return int(attempt), logical_id
