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

from . import analytics, keys, records
from .calls import Script, Steps
from .correlate import render_registered, render_unregistered
from .records import Message, UnreadableMessage
from .registration import MAX_ATTEMPTS, InvalidSend, Send
from .settings import Settings

REGISTER = Script.load(__package__, "register", libraries=("analytics", "records"))
READ_MESSAGES = Script.load(__package__, "read_messages")
LAYOUT = records.lua_config()
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
    deadline = now + settings.receipt_timeout
    bucket = keys.due_bucket(deadline)
    analytics_config = analytics.lua_config(settings)
    named = [p for p in send.parts if p.message_id]
    reply = yield from REGISTER(
        keys=[keys.message(logical_id), keys.DUE, keys.due(bucket), keys.EVALUATE,
              *(keys.part(p.message_id) for p in named), *(keys.owner(p.message_id) for p in named)],
        args=[
            logical_id,
            json.dumps(records.meta_row(send)),
            json.dumps(records.attempt_row(send, now, deadline)),
            send.id,
            settings.message_ttl,
            bucket,
            bucket * keys.DUE_BUCKET,
            "1" if send.retry_of else "0",
            now,
            analytics_config,
            keys.by_ref(send.client_ref) if send.client_ref else "",
            MAX_ATTEMPTS,
            LAYOUT,
            *(json.dumps([p.message_id, analytics.registered(p, send, now) if p.submitted and analytics_config
                          else False]) for p in named),
        ],
    )
    outcome, value = (v.decode() if isinstance(v, bytes) else v for v in reply)
    if outcome == "unknown":
        raise UnknownMessage("unknown_message", f"retry_of names {logical_id}, which was never registered")
    if outcome == "conflict":
        raise Conflict("conflict", f"a part of this send already belongs to message {value}")
    if outcome == "too_many":
        raise Conflict("too_many_attempts", f"message {logical_id} has {value} attempts, the most one may have")
    if outcome == "unreadable":
        raise Conflict("conflict", f"message {logical_id} is stored in a record dlrq did not write ({value}): "
                                   f"repair or delete {keys.message(logical_id)}")
    return Registered(logical_id, send.part_ids, int(value), created=outcome == "created")


def read_messages(logical_ids: list[str], part_ids: tuple[str, ...] = ()) -> Steps[list[Any]]:
    """Each message's record as stored (None, MessagePack, or a 0.1-0.2 hash's fields), then each
    part's, in one call."""
    if not logical_ids and not part_ids:
        return []
    return (yield from READ_MESSAGES(keys=[*(keys.message(i) for i in logical_ids), *(keys.part(i) for i in part_ids)],
                                     args=[len(logical_ids)]))


def _decoded(logical_id: str, stored: Any) -> Message | None:
    """A message one can read (an unreadable one is left out of views, with a warning, rather than
    failing every view read with it)."""
    try:
        return records.load_message(logical_id, stored)
    except UnreadableMessage as exc:
        log.warning("registered message %s is left out: %s", logical_id, exc)
        return None


def read_message(logical_id: str) -> Steps[Message | None]:
    """A registered message, or None."""
    [stored] = yield from read_messages([logical_id])
    return records.load_message(logical_id, stored)


def read_parts(part_ids: list[str]) -> Steps[dict[str, Any]]:
    """Each part's stored receipts by id (None for a part nothing was heard of)."""
    raw = (yield ("MGET", *(keys.part(i) for i in part_ids))) if part_ids else []
    return {i: records.load_part(r) for i, r in zip(part_ids, raw)}


def find_message(message_id: str) -> Steps[dict[str, Any] | None]:
    """The message view by its logical id or any part's messageId; None if never seen."""
    return (yield from find_messages([message_id]))[message_id]


def find_messages(message_ids: list[str], owners: dict[str, str | None] | None = None
                  ) -> Steps[dict[str, dict[str, Any] | None]]:
    """find_message for each id, in three round trips at most however many there are: the ids' own
    parts (which say what message each belongs to: skipped when `owners` says, as a worker reads
    it with the batch it applied), then the messages, then the messages' other parts, if any."""
    ids = list(dict.fromkeys(message_ids))
    if not ids:
        return {}
    if owners is None:
        raw, *legacy = yield [("MGET", *(keys.part(i) for i in ids)), *(("GET", keys.owner(i)) for i in ids)]
        docs = {i: records.load_part(r) for i, r in zip(ids, raw)}
        owners = {i: _owner(i, docs[i], old) for i, old in zip(ids, legacy)}
        logical = [owners[i] or i for i in ids]
        found = yield from read_messages(logical)
    else:
        logical = [owners.get(i) or i for i in ids]
        both = yield from read_messages(logical, tuple(ids))
        found, docs = both[:len(ids)], {i: records.load_part(r) for i, r in zip(ids, both[len(ids):])}
    messages = [_decoded(i, stored) for i, stored in zip(logical, found)]
    others = [part for message in messages if message for part in message.submitted_parts if part not in docs]
    docs |= yield from read_parts(list(dict.fromkeys(others)))
    views: dict[str, dict[str, Any] | None] = {}
    for i, message in zip(ids, messages):
        if message is not None:
            views[i] = render_registered(message.meta, message.attempts, message.alerts, docs)
        else:
            views[i] = None if docs[i] is None else render_unregistered(i, docs[i])
    return views


def _owner(part_id: str, doc: dict[str, Any] | None, legacy: bytes | None) -> str | None:
    """The message a part belongs to: its record says (True: itself), or (written by dlrq 0.1-0.2) its
    owner key."""
    owner = doc.get("o") if doc is not None else None
    if owner:
        return part_id if owner is True else str(owner)
    return legacy.decode() if legacy else None


def read_analytics(by: str, start: datetime, end: datetime, now: datetime | None = None) -> Steps[dict[str, Any]]:
    """The contract's /analytics answer for `by` over [start, end): an HGETALL an hour, a day's worth a
    pipeline, tallied as they come (memory bounded by the rows, never by the span)."""
    if by not in analytics.DIMENSIONS:
        raise ValueError(f"by is one of {', '.join(analytics.DIMENSIONS)}")
    hours = analytics.hours(start, end)
    rows: dict[str, analytics.Tally] = {}
    for first in range(0, len(hours), analytics.HOURS_A_READ):
        chunk = hours[first:first + analytics.HOURS_A_READ]
        analytics.tally((yield [("HGETALL", keys.analytics(by, hour)) for hour in chunk]), rows)
    return analytics.report(by, start, end, rows, now)
