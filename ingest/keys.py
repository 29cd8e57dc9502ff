"""Every Redis key dlrq owns, named in one place (RQ names its own)."""

PREFIX = "dlrq:"


def part(message_id: str) -> str:
    """JSON of one part: its distinct receipts, which are also its resend filter."""
    return f"{PREFIX}part:{message_id}"
