"""Messages in Redis: register a send, and find a message by any of its ids.

The I/O edge around ingest/registration.py and ingest/correlate.py: one atomic
Lua call registers, one or two round trips read.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import redis
import redis.asyncio as aioredis

from . import keys
from .correlate import load_part, render_registered, render_unregistered
from .receipt import utc_now_iso
from .registration import InvalidSend, Send, attempt_record, message_record

REGISTER = files(__package__).joinpath("lua", "register.lua").read_bytes()


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


def _registration(send: Send, receipt_timeout: int, ttl: int) -> tuple[list[str], list[object]]:
    """register.lua's keys and arguments."""
    logical_id = send.retry_of or send.id
    now = time.time()
    keys_ = [keys.message(logical_id), keys.DEADLINES, *(keys.owner(i) for i in send.part_ids)]
    args = [
        logical_id,
        json.dumps(message_record(send)),
        json.dumps(attempt_record(send, utc_now_iso(), now + receipt_timeout)),
        send.id,
        ttl,
        now + receipt_timeout,
        "1" if send.retry_of else "0",
        now,
    ]
    return keys_, args


def _outcome(send: Send, reply: list[Any]) -> Registered:
    outcome, value = (v.decode() if isinstance(v, bytes) else v for v in reply)
    logical_id = send.retry_of or send.id
    if outcome == "unknown":
        raise UnknownMessage("unknown_message", f"retry_of names {logical_id}, which was never registered")
    if outcome == "conflict":
        raise Conflict("conflict", f"a part of this send already belongs to message {value}")
    return Registered(logical_id, send.part_ids, int(value), created=outcome == "created")


async def register(client: aioredis.Redis, send: Send, receipt_timeout: int, ttl: int) -> Registered:
    """Store the send as the message's first attempt, or as its next one with retry_of."""
    keys_, args = _registration(send, receipt_timeout, ttl)
    return _outcome(send, await client.register_script(REGISTER)(keys=keys_, args=args))


def register_sync(client: redis.Redis, send: Send, receipt_timeout: int, ttl: int) -> Registered:
    """The same, for the workers (the retry handler registers the attempt it sends)."""
    keys_, args = _registration(send, receipt_timeout, ttl)
    return _outcome(send, client.register_script(REGISTER)(keys=keys_, args=args))


Decoded = tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]


def decode_message(fields: dict[bytes, bytes]) -> Decoded:
    """A message hash as (meta, attempts oldest first, alerts)."""
    text = {k.decode(): v for k, v in fields.items()}
    meta = json.loads(text["meta"])
    attempts = [json.loads(text[f"attempt:{n}"]) for n in range(1, int(text["attempts"]) + 1)]
    alerts = [json.loads(v) for k, v in text.items() if k.startswith("alert:")]
    return meta, attempts, alerts


async def find_message(client: aioredis.Redis, message_id: str) -> dict[str, Any] | None:
    """The message view by its logical id or any part's messageId; None if never seen."""
    owner = await client.get(keys.owner(message_id))
    logical_id = owner.decode() if owner else message_id
    fields = await client.hgetall(keys.message(logical_id))
    if not fields:
        doc = load_part(await client.get(keys.part(message_id)))
        return None if doc is None else render_unregistered(message_id, doc)
    meta, attempts, alerts = decode_message(fields)
    part_ids = [p["message_id"] for p in attempts[-1]["parts"] if p["send_status"] == "0"]
    raw = await client.mget([keys.part(i) for i in part_ids]) if part_ids else []
    return render_registered(meta, attempts, alerts, {i: load_part(r) for i, r in zip(part_ids, raw)})


def find_message_sync(client: redis.Redis, message_id: str) -> dict[str, Any] | None:
    """The same view, for the workers."""
    owner = client.get(keys.owner(message_id))
    logical_id = owner.decode() if owner else message_id
    fields = client.hgetall(keys.message(logical_id))
    if not fields:
        doc = load_part(client.get(keys.part(message_id)))
        return None if doc is None else render_unregistered(message_id, doc)
    meta, attempts, alerts = decode_message(fields)
    part_ids = [p["message_id"] for p in attempts[-1]["parts"] if p["send_status"] == "0"]
    raw = client.mget([keys.part(i) for i in part_ids]) if part_ids else []
    return render_registered(meta, attempts, alerts, {i: load_part(r) for i, r in zip(part_ids, raw)})
