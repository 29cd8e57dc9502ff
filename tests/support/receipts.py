"""Receipts as Vonage's documentation shows them, and a builder for variations."""

from __future__ import annotations

# From "Delivery receipts" (Vonage SMS guide): an accepted, then a delivered receipt for one message.
DOCS_ACCEPTED = {
    "err-code": "0",
    "message-timestamp": "2018-10-25 12:10:26",
    "messageId": "0B00000127FDBC63",
    "msisdn": "447547232824",
    "network-code": "23410",
    "price": "0.03330000",
    "scts": "1810251210",
    "status": "accepted",
    "to": "Nexmo CLI",
}
DOCS_DELIVERED = {**DOCS_ACCEPTED, "message-timestamp": "2018-10-25 12:10:29", "scts": "1810251310", "status": "delivered"}

# From "Get a Delivery Receipt" (Nexmo tutorial), with its api-key.
DOCS_TUTORIAL = {
    "msisdn": "442079460000",
    "to": "442079460001",
    "network-code": "23420",
    "messageId": "14000000B1AA4386",
    "price": "0.03330000",
    "status": "delivered",
    "scts": "2002101103",
    "err-code": "0",
    "api-key": "7c47b66b",
    "message-timestamp": "2020-02-10 11:03:54",
}


def receipt(message_id: str, status: str, second: int = 0, err_code: str = "0", **extra: str) -> dict[str, str]:
    """A receipt whose event time is `second` seconds into 2020-01-01 14:00."""
    return {
        "messageId": message_id,
        "status": status,
        "err-code": err_code,
        "msisdn": "447700900000",
        "to": "Vonage APIs",
        "network-code": "23410",
        "price": "0.03330000",
        "scts": "2001011400",
        "message-timestamp": f"2020-01-01 14:{second // 60:02d}:{second % 60:02d}",
        **extra,
    }
