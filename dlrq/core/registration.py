"""What a send registration is: the SMS API's send response, read as the parts of one message.

Pure functions only. The send response is the one thing that ties the parts of a
long text together: each part has its own message-id and its own receipts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .receipt import ID_RULE, MESSAGE_ID, InvalidReceipt

MAX_PARTS = 255
# Attempts one message may have (retry_of): each is kept in its hash, which must stay bounded.
MAX_ATTEMPTS = 100
# The send response's part status for "submitted"; anything else was never sent.
SUBMITTED = "0"


class InvalidSend(InvalidReceipt):
    """A body that is not a send response that can be correlated (400)."""


@dataclass(frozen=True)
class PartSend:
    index: int
    message_id: str | None
    status: str
    to: str | None
    price: str | None
    network: str | None
    error_text: str | None

    @property
    def submitted(self) -> bool:
        return self.status == SUBMITTED and self.message_id is not None

    def to_record(self) -> dict[str, Any]:
        record = {
            "index": self.index,
            "message_id": self.message_id,
            "send_status": self.status,
            "to": self.to,
            "price": self.price,
            "network": self.network,
            "error_text": self.error_text,
        }
        return {k: v for k, v in record.items() if v is not None}


@dataclass(frozen=True)
class Send:
    parts: tuple[PartSend, ...]
    client_ref: str | None
    text: str | None
    sender: str | None
    retry_of: str | None

    @property
    def id(self) -> str:
        """The logical id: the first part's message-id (the first one the response names)."""
        return next(p.message_id for p in self.parts if p.message_id is not None)

    @property
    def part_ids(self) -> list[str]:
        return [p.message_id for p in self.parts if p.message_id is not None]

    @property
    def to(self) -> str | None:
        return next((p.to for p in self.parts if p.to), None)


def _optional_str(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidSend("malformed_field", f"{name} must be a string")
    return str(value)


def parse_part(index: int, obj: Any) -> PartSend:
    if not isinstance(obj, dict):
        raise InvalidSend("malformed_field", f"messages[{index}] must be an object")
    status = _optional_str(obj, "status")
    if status is None:
        raise InvalidSend("missing_field", f"messages[{index}].status is required")
    message_id = _optional_str(obj, "message-id") or None
    if status == SUBMITTED and message_id is None:
        raise InvalidSend("missing_field", f"messages[{index}] was submitted (status 0) but has no message-id")
    if message_id is not None and not MESSAGE_ID.fullmatch(message_id):
        # No receipt could ever name it (the webhook refuses such ids), nor GET /messages/{id} find it.
        raise InvalidSend("malformed_field", f"messages[{index}].message-id must be {ID_RULE}")
    return PartSend(
        index=index,
        message_id=message_id,
        status=status,
        to=_optional_str(obj, "to"),
        price=_optional_str(obj, "message-price"),
        network=_optional_str(obj, "network"),
        error_text=_optional_str(obj, "error-text"),
    )


def parse_send(obj: Any) -> Send:
    """Read a send response; refuse what cannot be correlated."""
    if not isinstance(obj, dict):
        raise InvalidSend("not_an_object", "the body must be the send response, a JSON object")
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidSend("missing_field", "messages must be a non-empty list")
    if len(messages) > MAX_PARTS:
        raise InvalidSend("malformed_field", f"more than {MAX_PARTS} parts")
    count = obj.get("message-count")
    if count is not None and str(count) != str(len(messages)):
        raise InvalidSend("malformed_field", f"message-count is {count} but messages holds {len(messages)}")
    parts = tuple(parse_part(i, m) for i, m in enumerate(messages))
    ids = [p.message_id for p in parts if p.message_id is not None]
    if not ids:
        raise InvalidSend("missing_field", "no part has a message-id: nothing to correlate")
    if len(set(ids)) != len(ids):
        raise InvalidSend("malformed_field", "a message-id appears twice")
    client_ref = next((_optional_str(m, "client-ref") for m in messages if m.get("client-ref")), None)
    return Send(
        parts=parts,
        client_ref=client_ref,
        text=_optional_str(obj, "text"),
        sender=_optional_str(obj, "from"),
        retry_of=_retry_of(obj),
    )


def _retry_of(obj: dict[str, Any]) -> str | None:
    retry_of = _optional_str(obj, "retry_of") or None
    if retry_of is not None and not MESSAGE_ID.fullmatch(retry_of):
        raise InvalidSend("malformed_field", f"retry_of must be a message id: {ID_RULE}")
    return retry_of


def attempt_record(send: Send, registered_at: str, deadline: float) -> dict[str, Any]:
    """What a message keeps of one attempt (one send response)."""
    return {
        "registered_at": registered_at,
        "deadline": deadline,
        "parts": [p.to_record() for p in send.parts],
    }


def message_record(send: Send) -> dict[str, Any]:
    """What a message keeps of its first registration, beyond its attempts."""
    record = {"id": send.id, "to": send.to, "client_ref": send.client_ref, "text": send.text, "from": send.sender}
    return {k: v for k, v in record.items() if v is not None}
