"""Vonage Messages API status callbacks, as receipts: the contract's mapping, and back.

Pure functions. A status callback becomes the same flat parameters an SMS API receipt has, so
that everything after the ingest (dedupe, status rules, events, analytics, the record) treats
both alike; `messages-status` keeps the word Vonage sent, and `api` says where it came from.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .receipt import InvalidReceipt

ADAPTER = "messages"
# The contract's mapping onto the status rules; other words are kept as they are (recorded in
# the part's history, they never change its status).
STATUSES = {"submitted": "accepted", "delivered": "delivered", "read": "delivered", "rejected": "rejected",
            "undeliverable": "failed"}
STATUS_FIELD = "messages-status"
# Optional members copied when they hold a scalar: (object, member) -> receipt parameter.
OPTIONAL = {
    ("destination", "network_code"): "network-code",
    ("usage", "price"): "price",
    ("usage", "currency"): "currency",
    ("sms", "count_total"): "sms-count",
    ("error", "detail"): "error-detail",
}
TOP_LEVEL = {"to": "msisdn", "from": "to", "client_ref": "client-ref", "channel": "channel"}


def to_params(doc: Any) -> dict[str, str]:
    """A status callback's receipt parameters; InvalidReceipt when it can never be one.

    Only what makes it a status is required (message_uuid, status, timestamp); the rest is kept
    when it has the documented shape and left out otherwise, so that nothing valid is refused.
    """
    if not isinstance(doc, dict):
        raise InvalidReceipt("not_an_object", "JSON body must be an object")
    for name in ("message_uuid", "status", "timestamp"):
        value = doc.get(name)
        if value is None or value == "":
            raise InvalidReceipt("missing_field", f"{name} is required and must not be empty")
        if not isinstance(value, str):
            raise InvalidReceipt("malformed_field", f"{name} must be a string")
    status = doc["status"]
    params = {
        "messageId": doc["message_uuid"],
        "status": STATUSES.get(status, status),
        STATUS_FIELD: status,
        "message-timestamp": event_time(doc["timestamp"]),
    }
    for name, param in TOP_LEVEL.items():
        if _scalar(doc.get(name)):
            params[param] = _text(doc[name])
    for (outer, inner), param in OPTIONAL.items():
        member = doc.get(outer)
        if isinstance(member, dict) and _scalar(member.get(inner)):
            params[param] = _text(member[inner])
    error = doc.get("error")
    if isinstance(error, dict) and _scalar(error.get("title")):
        title = _text(error["title"])
        # Vonage's error code (seen as a number and as a string); a title that is not one is kept aside.
        params["err-code" if title.isascii() and title.isdigit() else "error-title"] = title
    return params


def event_time(timestamp: str) -> str:
    """ISO 8601 as UTC `YYYY-MM-DD HH:MM:SS[.ffffff]`: ordered as text like the SMS API's message-timestamp."""
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise InvalidReceipt("malformed_field", f"timestamp {timestamp[:40]!r} is not ISO 8601") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        moment = moment.astimezone(timezone.utc)
    except OverflowError as exc:  # 0001-01-01T00:00:00+01:00 is before the first UTC moment datetime holds
        raise InvalidReceipt("malformed_field", f"timestamp {timestamp[:40]!r} is out of range") from exc
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{moment.microsecond:06d}".rstrip("0") if moment.microsecond else text


def to_callback(params: dict[str, str]) -> dict[str, Any]:
    """The status callback that gives these parameters (replaying a recorded one over HTTP)."""
    doc: dict[str, Any] = {"message_uuid": params["messageId"], "status": params.get(STATUS_FIELD, params["status"]),
                           "timestamp": params["message-timestamp"].replace(" ", "T") + "Z"}
    for name, param in TOP_LEVEL.items():
        if param in params:
            doc[name] = params[param]
    for (outer, inner), param in OPTIONAL.items():
        if param in params:
            doc.setdefault(outer, {})[inner] = params[param]
    for param in ("err-code", "error-title"):
        if param in params:
            doc.setdefault("error", {})["title"] = params[param]
    return doc


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool) and value != ""


def _text(value: str | int | float) -> str:
    return value if isinstance(value, str) else str(value)
