"""The message store: register a send, and find a message by any of its ids.

The I/O edge around registration.py and correlate.py, written once as Redis calls
(calls.py) that the ingest runs on its asyncio client and the workers and the CLI on
blocking ones: one atomic Lua call registers, three round trips at most read (one message or many).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import analytics, keys
from .calls import Script, Steps
from .correlate import load_part, render_registered, render_unregistered
from .receipt import iso_from_epoch
from .registration import MAX_ATTEMPTS, SUBMITTED, InvalidSend, Send, attempt_record, message_record
from .settings import Settings

REGISTER = Script.load(__package__, "register", libraries=("analytics",))
log = logging.getLogger("dlrq.store")


class UnknownMessage(InvalidSend):
    http_status = 404


class Conflict(InvalidSend):
    http_status = 409


@dataclass(frozen=True)
class Registered:
    id: str
    parts: list[str]
    attempt: int
    created: bool

    def answer(self) -> dict[str, Any]:
        return {"id": self.id, "parts": self.parts}


def register(send: Send, settings: Settings, now: float | None = None) -> Steps[Registered]:
    """Store the send as the message's first attempt, or as its next one with retry_of; count its
    submitted parts in the analytics. (`now`: when it was sent, for the benchmark's history.)"""
    logical_id = send.retry_of or send.id
    now = time.time() if now is None else now
    receipt_timeout, ttl = settings.receipt_timeout, settings.message_ttl
    analytics_config = analytics.lua_config(settings)
    submitted = [p for p in send.parts if p.submitted] if analytics_config else []
    reply = yield from REGISTER(
        keys=[keys.message(logical_id), keys.DEADLINES, keys.EVALUATE, *(keys.owner(i) for i in send.part_ids),
              *(keys.part(p.message_id) for p in submitted if p.message_id)],
        args=[
            logical_id,
            json.dumps(message_record(send)),
            json.dumps(attempt_record(send, iso_from_epoch(now), now + receipt_timeout)),
            keys.attempt_key(send.id),
            ttl,
            now + receipt_timeout,
            "1" if send.retry_of else "0",
            now,
            keys.META,
            keys.ATTEMPTS,
            keys.ATTEMPT,
            analytics_config,
            keys.by_ref(send.client_ref) if send.client_ref else "",
            MAX_ATTEMPTS,
            *(json.dumps(analytics.registered(p, send, now)) for p in submitted),
        ],
    )
    outcome, value = (v.decode() if isinstance(v, bytes) else v for v in reply)
    if outcome == "unknown":
        raise UnknownMessage("unknown_message", f"retry_of names {logical_id}, which was never registered")
    if outcome == "conflict":
        raise Conflict("conflict", f"a part of this send already belongs to message {value}")
    if outcome == "too_many":
        raise Conflict("too_many_attempts", f"message {logical_id} has {value} attempts, the most one may have")
    return Registered(logical_id, send.part_ids, int(value), created=outcome == "created")


@dataclass(frozen=True)
class Message:
    """A message hash, decoded: its first registration, its attempts oldest first, its alerts."""

    meta: dict[str, Any]
    attempts: list[dict[str, Any]]
    alerts: list[dict[str, Any]]

    @property
    def submitted_parts(self) -> list[str]:
        """The latest attempt's parts that were sent: they decide the message."""
        return [p["message_id"] for p in self.attempts[-1]["parts"] if p["send_status"] == SUBMITTED]


class UnreadableMessage(ValueError):
    """A message hash that is not one dlrq wrote (changed by hand, or by another program)."""


def decode_message(fields: dict[bytes, bytes]) -> Message:
    text = {k.decode(errors="replace"): v for k, v in fields.items()}
    try:
        return Message(
            meta=json.loads(text[keys.META]),
            attempts=[json.loads(text[f"{keys.ATTEMPT}{n}"]) for n in range(1, int(text[keys.ATTEMPTS]) + 1)],
            alerts=[json.loads(v) for k, v in text.items() if k.startswith(keys.ALERT)],
        )
    except (KeyError, ValueError) as exc:
        raise UnreadableMessage(f"its record is not one dlrq wrote: {exc!r}") from exc


def _decoded(fields: dict[bytes, bytes]) -> Message | None:
    """A message one can read (an unreadable one is left out of views, with a warning, rather than
    failing every view read with it)."""
    if not fields:
        return None
    try:
        return decode_message(fields)
    except UnreadableMessage as exc:
        log.warning("a registered message is left out: %s", exc)
        return None


def read_message(logical_id: str) -> Steps[Message | None]:
    """A registered message, or None."""
    fields = yield ("HGETALL", keys.message(logical_id))
    return decode_message(fields) if fields else None


def read_parts(part_ids: list[str]) -> Steps[dict[str, Any]]:
    """Each part's stored receipts by id (None for a part nothing was heard of)."""
    raw = (yield ("MGET", *(keys.part(i) for i in part_ids))) if part_ids else []
    return {i: load_part(r) for i, r in zip(part_ids, raw)}


def find_message(message_id: str) -> Steps[dict[str, Any] | None]:
    """The message view by its logical id or any part's messageId; None if never seen."""
    return (yield from find_messages([message_id]))[message_id]


def find_messages(message_ids: list[str], owners: dict[str, str | None] | None = None
                  ) -> Steps[dict[str, dict[str, Any] | None]]:
    """find_message for each id, in three round trips at most however many there are: what each id
    belongs to (skipped when `owners` says: a worker reads it with the batch it applied), then the
    messages together with the ids' own parts, then the messages' other parts, if any."""
    ids = list(dict.fromkeys(message_ids))
    if not ids:
        return {}
    if owners is None:
        replies = yield [("GET", keys.owner(i)) for i in ids]
        owners = {i: owner.decode() if owner else None for i, owner in zip(ids, replies)}
    *found, raw = yield [*(("HGETALL", keys.message(owners.get(i) or i)) for i in ids),
                         ("MGET", *(keys.part(i) for i in ids))]
    messages = [_decoded(fields) for fields in found]
    docs = {i: load_part(r) for i, r in zip(ids, raw)}
    others = [part for message in messages if message for part in message.submitted_parts if part not in docs]
    docs |= yield from read_parts(list(dict.fromkeys(others)))
    views: dict[str, dict[str, Any] | None] = {}
    for i, message in zip(ids, messages):
        if message is not None:
            views[i] = render_registered(message.meta, message.attempts, message.alerts, docs)
        else:
            views[i] = None if docs[i] is None else render_unregistered(i, docs[i])
    return views


def read_analytics(by: str, start: datetime, end: datetime) -> Steps[dict[str, Any]]:
    """The contract's /analytics answer for `by` over [start, end): an HGETALL an hour, a day's worth a
    pipeline, tallied as they come (memory bounded by the rows, never by the span)."""
    if by not in analytics.DIMENSIONS:
        raise ValueError(f"by is one of {', '.join(analytics.DIMENSIONS)}")
    hours = analytics.hours(start, end)
    rows: dict[str, analytics.Tally] = {}
    for first in range(0, len(hours), analytics.HOURS_A_READ):
        chunk = hours[first:first + analytics.HOURS_A_READ]
        analytics.tally((yield [("HGETALL", keys.analytics(by, hour)) for hour in chunk]), rows)
    return analytics.report(by, start, end, rows)
