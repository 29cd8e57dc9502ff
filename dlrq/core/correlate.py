"""Correlate the parts of one message: the contract's message view, and which parts went silent.

Pure functions over what Redis holds (the message's registration and each part's
receipts). Nothing here is stored already decided, so receipts that arrived before
their registration count exactly as if it had come first.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from .receipt import API_FIELD
from .status import FINAL, chronological, deciding_receipt, message_status

HISTORY_FIELDS = ("status", "err-code", "message-timestamp", "received_at")
NOT_SUBMITTED = "failed"

Part = dict[str, Any]


def render_part(message_id: str, index: int, doc: Part | None) -> dict[str, Any]:
    history = doc["history"] if doc else []
    deciding = deciding_receipt(history)
    shown = deciding or (history[-1] if history else {})
    unreadable = {"unreadable": doc["unreadable"]} if doc and "unreadable" in doc else {}
    # A Messages API status says so, and on which channel.
    api = {"api": shown[API_FIELD], "channel": shown.get("channel")} if shown.get(API_FIELD) else {}
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
        **api,
        **unreadable,
    }


def render_unsent(sent: Mapping[str, Any]) -> dict[str, Any]:
    """A part the SMS API refused at send time: it never travels, so it has failed."""
    return {
        "message_id": sent.get("message_id"),
        "index": sent["index"],
        "status": NOT_SUBMITTED,
        "send_status": sent["send_status"],
        "error_text": sent.get("error_text"),
        "err_code": None,
        "network_code": sent.get("network"),
        "price": None,
        "scts": None,
        "message_timestamp": None,
        "history": [],
    }


def total_price(parts: list[dict[str, Any]]) -> str | None:
    prices = [p["price"] for p in parts if p.get("price")]
    try:
        return str(sum((Decimal(p) for p in prices), Decimal(0))) if prices else None
    except InvalidOperation:
        return None


def render_attempt(attempt: Mapping[str, Any], docs: Mapping[str, Part | None]) -> list[dict[str, Any]]:
    rendered = []
    for sent in attempt["parts"]:
        if sent["send_status"] != "0":
            rendered.append(render_unsent(sent))
            continue
        part = render_part(sent["message_id"], sent["index"], docs.get(sent["message_id"]))
        if part["price"] is None:
            part["price"] = sent.get("price")
        rendered.append(part)
    return rendered


def render_registered(
    meta: Mapping[str, Any],
    attempts: list[Mapping[str, Any]],
    alerts: list[Mapping[str, Any]],
    docs: Mapping[str, Part | None],
) -> dict[str, Any]:
    """The message as the contract shows it: the latest attempt's parts decide its status."""
    parts = render_attempt(attempts[-1], docs)
    return {
        "id": meta["id"],
        "status": message_status([p["status"] for p in parts], len(parts)),
        "registered": True,
        "to": meta.get("to"),
        "client_ref": meta.get("client_ref"),
        "parts_expected": len(parts),
        "parts": parts,
        "price": total_price(parts),
        "attempts": len(attempts),
        "alerts": sorted(alerts, key=lambda a: (a.get("raised_at", ""), a.get("id", ""))),
    }


def render_unregistered(message_id: str, doc: Part) -> dict[str, Any]:
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
        "price": part["price"],
        "attempts": 1,
        "alerts": [],
    }


def silent_parts(attempt: Mapping[str, Any], docs: Mapping[str, Part | None]) -> list[str]:
    """Submitted parts of an attempt with no final receipt yet."""
    silent = []
    for sent in attempt["parts"]:
        if sent["send_status"] != "0":
            continue
        doc = docs.get(sent["message_id"])
        if not any(entry.get("status") in FINAL for entry in (doc["history"] if doc else [])):
            silent.append(sent["message_id"])
    return silent
