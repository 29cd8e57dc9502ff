"""What a delivery receipt is, and when a set of parameters is one.

Pure functions only: the HTTP edge, the workers and the replay tool all agree
on a receipt through this module.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

REQUIRED = ("messageId", "status")
# Vonage sends about fifteen short fields; anything far beyond is not a receipt.
MAX_FIELDS = 100
MAX_NAME_LENGTH = 64
MAX_VALUE_LENGTH = 1024
# Never kept with a part's history: they authenticate one delivery attempt
# of a receipt, not the receipt itself.
TRANSPORT_FIELDS = frozenset({"timestamp", "nonce", "sig", "api-key"})
# What a part keeps of a receipt: the fields the contract names, and other fields (Vonage
# adds some over time) only up to EXTRA_BYTES, so that no sender can grow a part without bound.
CONTRACT_FIELDS = ("status", "err-code", "message-timestamp", "scts", "network-code", "price", "msisdn", "to",
                   "client-ref", "messages-status")
EXTRA_BYTES = 512
# Which webhook a receipt came through: the SMS API's delivery receipts, or the Messages API's
# status callbacks (dlrq.core.messages_api), whose history entries say so in API_FIELD.
SMS, MESSAGES = "sms", "messages"
ADAPTERS = (SMS, MESSAGES)
API_FIELD = "api"

# A message id as Vonage makes them (16 hex digits, or a UUID), within what every part of dlrq can
# hold and look up: a `/`, a space or a 60 KB id could never be fetched at GET /messages/{id}.
MESSAGE_ID = re.compile(r"[A-Za-z0-9._:~-]{1,128}")
ID_RULE = "1 to 128 of A-Z a-z 0-9 . _ : ~ -"
# A part's price: a plain decimal (Vonage gives eight places) from 0 to MAX_PRICE, so that the
# analytics' sums of prices stay exact integers for as long as they are kept.
MAX_PRICE = 1000
PRICE = re.compile(r"[0-9]{1,3}(\.[0-9]{0,16})?|1000(\.0{0,16})?")
# Vonage's message-timestamp (UTC, no zone): read as text, and compared as text with the bounds.
CANONICAL_TIME = re.compile(r"(?:19|20)[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[ T]"
                            r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?")
EARLIEST_TEXT = "2000-01-01 00:00:00"
MAX_ERR_CODE_DIGITS = 10
MAX_SCTS_DIGITS = 14
# Times a receipt may carry, as epoch seconds: none before 2000, none more than a day after it was
# received (a receipt from the year 9999 would outrank every genuine one).
EARLIEST = 946_684_800
FUTURE_SLACK = 86_400


class InvalidReceipt(ValueError):
    """Input that will never become a valid receipt: Vonage should not resend it."""

    http_status = 400

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Receipt:
    params: dict[str, str]
    received_at: str
    adapter: str = SMS

    def to_record(self) -> dict[str, Any]:
        """The recorded-receipt shape of the contract (one JSONL line); `adapter` unless it is SMS."""
        record = {"received_at": self.received_at, "params": self.params}
        return record if self.adapter == SMS else {**record, "adapter": self.adapter}

    @classmethod
    def from_record(cls, record: Any, now: float | None = None) -> Receipt:
        """A recorded receipt, checked as the ingest checks one (against the time it was received)."""
        if not isinstance(record, dict) or not isinstance(record.get("params"), dict):
            raise InvalidReceipt("malformed_record", "expected {received_at, params}")
        received_at = record.get("received_at")
        if not isinstance(received_at, str) or not received_at:
            raise InvalidReceipt("malformed_record", "received_at must be an ISO 8601 string")
        now = time.time() if now is None else now
        # A time that is not one is taken for now, as the worker does (records from elsewhere); one
        # that is one must be a time a receipt could have arrived at.
        received = epoch_of(received_at)
        if received is not None and not EARLIEST <= received <= now + FUTURE_SLACK:
            raise InvalidReceipt("malformed_record", f"received_at {received_at[:40]!r} is out of range")
        adapter = record.get("adapter", SMS)
        if adapter not in ADAPTERS:
            raise InvalidReceipt("malformed_record", f"adapter must be one of {', '.join(ADAPTERS)}")
        return cls(params=validate(stringify(record["params"]), received or now), received_at=received_at,
                   adapter=adapter)


def receipt_id(batch_id: str, index: int) -> str:
    """A receipt's request id: its batch's job id and its place in the batch, so the
    ingest and the worker name it alike without storing anything more."""
    return f"{batch_id}:{index}"


def utc_now_iso() -> str:
    """ISO 8601 UTC with milliseconds, as in the contract's examples."""
    return iso_from_epoch(time.time())


def iso_from_epoch(epoch: float) -> str:
    second = int(epoch)
    return f"{_second_iso(second)}.{int((epoch - second) * 1000):03d}Z"


def iso_from_ms(ms: int) -> str:
    """iso_from_epoch of epoch milliseconds, exactly (no float in between)."""
    return f"{_second_iso(ms // 1000)}.{ms % 1000:03d}Z"


@lru_cache(maxsize=2)
def _second_iso(second: int) -> str:
    # Formatting the date is most of the cost, and thousands of receipts share each second.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def stringify(obj: dict[str, Any]) -> dict[str, str]:
    """Keep every value as a string; refuse values a flat receipt cannot hold."""
    out: dict[str, str] = {}
    for key, value in obj.items():
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, (bool, int, float)):
            out[key] = json.dumps(value)
        else:
            kind = "null" if value is None else type(value).__name__
            raise InvalidReceipt("malformed_field", f"field {key!r} is {kind}; receipt values are flat strings")
    if not _is_utf8("".join(out)) or not _is_utf8("".join(out.values())):
        # One pass over the whole receipt: the field is looked for only when there is one to name.
        key = next(k for k, v in out.items() if not (_is_utf8(k) and _is_utf8(v)))
        raise InvalidReceipt("bad_encoding", f"field {key!r} holds an unpaired surrogate")
    return out


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def epoch_of(text: str) -> float | None:
    """An ISO 8601 time (UTC unless it says otherwise) as epoch seconds; None if it is not one."""
    try:
        moment = datetime.fromisoformat(text.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def validate(params: dict[str, str], received: float | None = None) -> dict[str, str]:
    """The receipt, if every part of dlrq can apply it; InvalidReceipt naming the first field that cannot be.

    `received`: when it was received (epoch seconds; now by default), which bounds its event time.
    """
    if len(params) > MAX_FIELDS:
        raise InvalidReceipt("malformed_field", f"{len(params)} fields; a receipt has at most {MAX_FIELDS}")
    for name, value in params.items():
        if len(name) > MAX_NAME_LENGTH:
            raise InvalidReceipt("malformed_field", f"a field name is over {MAX_NAME_LENGTH} characters")
        if len(value) > MAX_VALUE_LENGTH:
            raise InvalidReceipt("malformed_field", f"field {name!r} is over {MAX_VALUE_LENGTH} characters")
    for name in REQUIRED:
        if not params.get(name):
            raise InvalidReceipt("missing_field", f"{name} is required and must not be empty")
    if not MESSAGE_ID.fullmatch(params["messageId"]):
        raise InvalidReceipt("malformed_field", f"messageId must be {ID_RULE}")
    err_code = params.get("err-code")
    if err_code is not None and not (err_code.isascii() and err_code.isdigit()):
        raise InvalidReceipt("malformed_field", "err-code must be digits")
    if err_code is not None and len(err_code) > MAX_ERR_CODE_DIGITS:
        raise InvalidReceipt("malformed_field", f"err-code is over {MAX_ERR_CODE_DIGITS} digits")
    scts = params.get("scts")
    if scts and not (scts.isascii() and scts.isdigit() and len(scts) <= MAX_SCTS_DIGITS):
        raise InvalidReceipt("malformed_field", "scts must be the carrier's time, digits (YYMMDDHHMM)")
    price = params.get("price")
    if price and not valid_price(price):
        raise InvalidReceipt("malformed_field", f"price must be a plain decimal from 0 to {MAX_PRICE}")
    event_time = params.get("message-timestamp")
    if event_time:
        _check_event_time(event_time, time.time() if received is None else received)
    return params


def valid_price(price: str) -> bool:
    return PRICE.fullmatch(price) is not None


def _check_event_time(text: str, received: float) -> None:
    if CANONICAL_TIME.fullmatch(text):
        # The common case, read as text: a tenth of what parsing it costs (the webhook's hot path).
        plain = text[:10] + " " + text[11:19]
        early, late = plain < EARLIEST_TEXT, plain > _latest_text(int(received))
    else:
        moment = epoch_of(text)
        if moment is None:
            raise InvalidReceipt("malformed_field", "message-timestamp must be a time (YYYY-MM-DD HH:MM:SS, UTC)")
        early, late = moment < EARLIEST, moment > received + FUTURE_SLACK
    if early:
        raise InvalidReceipt("malformed_field", "message-timestamp is before the year 2000")
    if late:
        raise InvalidReceipt("malformed_field", "message-timestamp is more than a day after the receipt arrived")


@lru_cache(maxsize=4)
def _latest_text(received_second: int) -> str:
    """The latest message-timestamp a receipt received then may carry, as text (thousands share each second)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(received_second + FUTURE_SLACK))


def dedupe_key(params: dict[str, str]) -> tuple[str, ...]:
    """Two receipts with the same key are one receipt delivered twice (for a Messages API callback:
    message_uuid, status as sent, timestamp and error; the same, as it is mapped)."""
    return (
        params["messageId"],
        params["status"],
        params.get("err-code", ""),
        params.get("scts", ""),
        params.get("message-timestamp", ""),
        params.get("messages-status", ""),
    )


def history_entry(receipt: Receipt) -> dict[str, str]:
    """What a part keeps of one receipt: the contract's fields, then others within EXTRA_BYTES."""
    params = receipt.params
    entry = {k: params[k] for k in CONTRACT_FIELDS if k in params}
    room = EXTRA_BYTES
    for name, value in params.items():
        if name in entry or name in TRANSPORT_FIELDS or name in ("messageId", API_FIELD):
            continue
        room -= len(name) + len(value)
        if room < 0:
            break
        entry[name] = value
    if receipt.adapter != SMS:
        entry[API_FIELD] = receipt.adapter
    entry["received_at"] = receipt.received_at
    return entry
