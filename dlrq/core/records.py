"""What dlrq keeps of a part and of a message in Redis, compactly: the layout, and reading it back.

A part's record is MessagePack, written by the Lua scripts (`lua/records.lua`): the fields its
receipts share once (those of its first receipt, the common ones by a short code), then each
receipt as its own fields by position (status, err-code, the two times, when it arrived, the
Messages API's status word) and what else differs from the shared ones. Times are kept as numbers
where the number gives the text back exactly. A record also says which message the part belongs
to, and what analytics keep of its registration and first final receipt.

A registered message is MessagePack too: its client-ref, text and sender, its attempts (when each
was registered and its receipts are due, each part by position), which send made each retry, and
its alerts.

Records written by dlrq 0.1-0.2 (a part as JSON, a message as a hash of JSON fields) are read as they
are, and rewritten in this layout the first time they change. Pure functions.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgpack

from . import keys
from .analytics import REGISTERED
from .receipt import iso_from_ms
from .registration import SUBMITTED, Send

VERSION = 2
# A receipt's own fields, by position in its entry (then a map of what differs from the shared fields).
PER_RECEIPT = ("status", "err-code", "message-timestamp", "scts", "received_at", "messages-status")
# Short codes of the shared fields most receipts carry (the rest keep their names).
CODES = {"msisdn": "m", "to": "t", "network-code": "n", "price": "p", "client-ref": "r", "_country": "c",
         "_cost": "$", "api": "a", "channel": "ch"}
NAMES = {code: name for name, code in CODES.items()}
_OWN = frozenset(PER_RECEIPT)
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_EPOCH, _SECOND = datetime(1970, 1, 1), timedelta(seconds=1)

# A message's first registration, and each part of an attempt, by position.
META = ("client_ref", "text", "from")
SENT = ("index", "message_id", "send_status", "to", "price", "network", "error_text")

Part = dict[str, Any]


def lua_config() -> str:
    """The layout's names, for lua/records.lua."""
    return json.dumps({"per": PER_RECEIPT, "codes": CODES, "version": VERSION, "meta": META, "sent": SENT,
                       "v1": {"meta": keys.META, "attempts": keys.ATTEMPTS, "attempt": keys.ATTEMPT,
                              "key": keys.ATTEMPT_KEY, "alert": keys.ALERT, "registered": REGISTERED}})


def receipt_row(entry: dict[str, Any], received: float) -> list[Any]:
    """A receipt as apply_receipts.lua takes it: its own fields by position (False: absent), compact
    where that is exact, then the others by code. `received`: its received_at as epoch seconds."""
    stamp, scts, received_at = entry.get("message-timestamp"), entry.get("scts"), entry.get("received_at")
    return [
        entry["status"], entry.get("err-code", False), compact_time(stamp) if stamp else False,
        compact_digits(scts) if scts else False, compact_received(received_at, received) if received_at else False,
        entry.get("messages-status", False),
        {CODES.get(name, name): value for name, value in entry.items() if name not in _OWN},
    ]


def compact_time(text: str) -> int | str:
    """Vonage's message-timestamp ("2026-12-04 12:00:01", UTC) as epoch seconds; any other form as it is."""
    if len(text) != 19 or text[10] != " ":
        return text
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return (moment - _EPOCH) // _SECOND if moment.isoformat(" ") == text else text


def compact_digits(text: str) -> int | str:
    """scts ("2612041200") as a number when the number gives it back."""
    return int(text) if text.isascii() and text.isdigit() and text[0] != "0" and len(text) < 16 else text


def compact_received(text: str, epoch: float) -> int | str:
    """dlrq's received_at ("2026-12-04T12:00:01.123Z") as epoch milliseconds when they give it back."""
    ms = round(epoch * 1000)
    return ms if iso_from_ms(ms) == text else text


def load_part(raw: bytes | str | None) -> Part | None:
    """A stored part, as {"history": [each receipt's fields by name], "fh", "fe", "reg", "o" (its
    message's logical id, True for its own)}; one that is not a part record shows as such, with no
    receipts, rather than failing the view."""
    if raw is None:
        return None
    data = raw.encode() if isinstance(raw, str) else raw
    if data[:1] == b"{":
        return _load_v1(data)
    try:
        doc = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException):
        return _unreadable("its stored record is not a part record")
    if not isinstance(doc, list) or not doc or doc[0] != VERSION:
        return _unreadable("its stored record is not a part record")
    shared, rows, first_final, first_at, registered, owner = (doc[1:] + [False] * 6)[:6]
    if not isinstance(rows, list):
        return _unreadable("its stored record is not a part record")
    history = []
    for row in rows:
        if not isinstance(row, list) or not row or not isinstance(row[0], str):
            return _unreadable("a receipt in its history is not a receipt")
        history.append(_entry(row, _map(shared)))
    part: Part = {"history": history}
    for name, value in (("fh", first_final), ("fe", first_at), ("reg", registered), ("o", owner)):
        if value is not False and value is not None:
            part[name] = value
    return part


def _entry(row: list[Any], shared: dict[Any, Any]) -> dict[str, Any]:
    entry = {NAMES.get(code, code): value for code, value in shared.items()}
    if len(row) > len(PER_RECEIPT):
        for code, value in _map(row[len(PER_RECEIPT)]).items():
            name = NAMES.get(code, code)
            if value is False:
                entry.pop(name, None)
            else:
                entry[name] = value
    for name, value in zip(PER_RECEIPT, row):
        if value is not False and value is not None:
            entry[name] = value
    if isinstance(entry.get("message-timestamp"), int):
        entry["message-timestamp"] = time.strftime(_TIME_FORMAT, time.gmtime(entry["message-timestamp"]))
    if isinstance(entry.get("scts"), int):
        entry["scts"] = str(entry["scts"])
    if isinstance(entry.get("received_at"), int):
        entry["received_at"] = iso_from_ms(entry["received_at"])
    return entry


def _load_v1(data: bytes) -> Part:
    try:
        doc = json.loads(data)
    except ValueError:
        return _unreadable("its stored record is not valid JSON")
    if not isinstance(doc, dict):
        return _unreadable("its stored record is not a part record")
    # Lua's cjson writes an empty array as {}.
    history = doc.get("history") or []
    if not isinstance(history, list) or not all(isinstance(e, dict) and isinstance(e.get("status"), str)
                                                  for e in history):
        return _unreadable("its stored record is not a part record")
    return {**doc, "history": history}


def _unreadable(why: str) -> Part:
    return {"history": [], "unreadable": why}


def _map(value: Any) -> dict[Any, Any]:
    """MessagePack from Lua writes an empty table as an empty array."""
    return value if isinstance(value, dict) else {}


# --- messages ----------------------------------------------------------------------------------

def meta_row(send: Send) -> list[Any]:
    """What a message keeps of its first registration, by position (its `to` is its first part's)."""
    return _trimmed([send.client_ref, send.text, send.sender])


def attempt_row(send: Send, registered: float, deadline: float) -> list[Any]:
    """One attempt: when it was registered (epoch milliseconds), when its receipts are due, its parts."""
    parts = [_trimmed([p.index, p.message_id, p.status, p.to, p.price, p.network, p.error_text]) for p in send.parts]
    return [round(registered * 1000), deadline, parts]


def _trimmed(values: list[Any]) -> list[Any]:
    row = [False if v is None else v for v in values]
    while len(row) > 1 and row[-1] is False:
        row.pop()
    return row


@dataclass(frozen=True)
class Message:
    """A registered message: its first registration, its attempts oldest first, its alerts."""

    meta: dict[str, Any]
    attempts: list[dict[str, Any]]
    alerts: list[dict[str, Any]]

    @property
    def submitted_parts(self) -> list[str]:
        """The latest attempt's parts that were sent: they decide the message."""
        return [p["message_id"] for p in self.attempts[-1]["parts"] if p["send_status"] == SUBMITTED]


class UnreadableMessage(ValueError):
    """A message record that is not one dlrq wrote (changed by hand, or by another program)."""


def load_message(logical_id: str, stored: Any) -> Message | None:
    """A message as lua/read_messages.lua gives it: None, MessagePack, or a 0.1-0.2 hash's fields
    (field, value, ...)."""
    if not stored:
        return None
    try:
        if isinstance(stored, bytes):
            return _message(logical_id, msgpack.unpackb(stored, raw=False, strict_map_key=False))
        return _message_v1(dict(zip(stored[::2], stored[1::2])))
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, msgpack.UnpackException) as exc:
        raise UnreadableMessage(f"its record is not one dlrq wrote: {exc!r}") from exc


def _message(logical_id: str, doc: list[Any]) -> Message:
    if doc[0] != VERSION:
        raise ValueError(f"version {doc[0]!r}")
    meta_row, attempt_rows, _, alert_map = (doc[1:] + [False] * 4)[:4]
    attempts = []
    for registered, deadline, parts in attempt_rows:
        attempts.append({
            "registered_at": iso_from_ms(registered) if isinstance(registered, int) else registered,
            "deadline": deadline,
            "parts": [{name: value for name, value in zip(SENT, sent) if value is not False} for sent in parts],
        })
    meta = {"id": logical_id}
    to = next((p["to"] for p in attempts[0]["parts"] if p.get("to")), None)
    if to is not None:
        meta["to"] = to
    meta |= {name: value for name, value in zip(META, meta_row or []) if value is not False}
    alerts = [json.loads(alert) for alert in _map(alert_map).values()]
    return Message(meta, attempts, alerts)


def _message_v1(fields: dict[bytes, bytes]) -> Message:
    text = {key.decode(errors="replace"): value for key, value in fields.items()}
    return Message(
        meta=json.loads(text[keys.META]),
        attempts=[json.loads(text[f"{keys.ATTEMPT}{n}"]) for n in range(1, int(text[keys.ATTEMPTS]) + 1)],
        alerts=[json.loads(value) for key, value in text.items() if key.startswith(keys.ALERT)],
    )
