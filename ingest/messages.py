"""Where is my message: the contract's message view, derived from stored parts."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from . import keys
from .status import chronological, deciding_receipt, message_status

HISTORY_FIELDS = ("status", "err-code", "message-timestamp", "received_at")


def load_part(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    doc = json.loads(raw)
    # Lua's cjson writes an empty array as {}.
    if not doc.get("history"):
        doc["history"] = []
    return doc


def render_part(message_id: str, index: int, doc: dict[str, Any]) -> dict[str, Any]:
    history = doc["history"]
    deciding = deciding_receipt(history)
    shown = deciding or (history[-1] if history else {})
    return {
        "message_id": message_id,
        "index": index,
        "status": deciding["status"] if deciding else None,
        "err_code": shown.get("err-code"),
        "network_code": shown.get("network-code"),
        "price": shown.get("price"),
        "scts": shown.get("scts"),
        "message_timestamp": shown.get("message-timestamp"),
        "history": [
            {field.replace("-", "_"): entry.get(field) for field in HISTORY_FIELDS}
            for entry in chronological(history)
        ],
    }


def render_unregistered(message_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    """A message nobody registered is the single part its receipts name."""
    part = render_part(message_id, 0, doc)
    latest = doc["history"][-1] if doc["history"] else {}
    return {
        "id": message_id,
        "status": message_status([part["status"]], 1),
        "registered": False,
        "to": latest.get("msisdn"),
        "client_ref": latest.get("client-ref"),
        "parts_expected": 1,
        "parts": [part],
        "attempts": 1,
        "alerts": [],
    }


async def find_message(client: aioredis.Redis, message_id: str) -> dict[str, Any] | None:
    doc = load_part(await client.get(keys.part(message_id)))
    return None if doc is None else render_unregistered(message_id, doc)
