"""The record of accepted receipts: a Redis stream written with each batch.

Each entry holds one batch: its receipts in the contract's recorded shape
({"received_at", "params"}), one JSON line each, compressed together (zlib with a dictionary of
typical receipts: about 15 bytes a receipt in a batch of 32, 50 alone, where the lines take 300).
It is added by the same Lua call that enqueues the batch, so recording costs no round trip
(one entry per batch, not per receipt, keeps its cost small) and a receipt is recorded exactly
when it is acknowledged. The stream's ids are the times Redis took the entries.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from . import keys

Command = tuple[object, ...]
_COMPACT = json.JSONEncoder(separators=(",", ":"))  # json.dumps would build one per call
LEVEL = 1  # level 6 saves one byte a receipt more, for half as much again of the ingest's time

# What the lines of a batch are compressed against. Entries written with it name it (keys.RECORD_ZLIB):
# never change it; a better one is a new field, read beside this one.
_SAMPLES: list[dict[str, Any]] = [
    {"received_at": "2026-01-01T00:00:00.000Z", "params": {
        "to": "447700900001", "from": "Vonage", "channel": "sms",
        "message_uuid": "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
        "timestamp": "2026-01-01T00:00:00Z", "status": "submitted", "usage.currency": "EUR", "usage.price": "0.0333",
        "client_ref": "", "messages-status": "submitted"}, "adapter": "messages"},
    {"received_at": "2026-01-01T00:00:00.000Z", "params": {
        "err-code": "0", "message-timestamp": "2026-01-01 00:00:00", "messageId": "0B00000000000000",
        "msisdn": "447700900000", "network-code": "23410", "price": "0.03330000", "scts": "2601010000",
        "status": "accepted", "to": "Vonage APIs", "api-key": "abcd1234", "client-ref": "order-1"}},
    {"received_at": "2026-01-01T00:00:00.000Z", "params": {
        "messageId": "0C00000000000000", "msisdn": "447700900000", "to": "ACME", "network-code": "20801",
        "price": "0.03330000", "status": "failed", "scts": "2601010000", "err-code": "1",
        "message-timestamp": "2026-01-01 00:00:00", "api-key": "abcd1234", "client-ref": "order-1"}},
    {"received_at": "2026-01-01T00:00:00.000Z", "params": {
        "messageId": "0D00000000000000", "msisdn": "447700900000", "to": "ACME", "network-code": "23415",
        "price": "0.03330000", "status": "delivered", "scts": "2601010000", "err-code": "0",
        "message-timestamp": "2026-01-01 00:00:00", "api-key": "abcd1234", "client-ref": "order-1"}},
]
ZDICT = "".join(_COMPACT.encode(sample) + "\n" for sample in _SAMPLES).encode()


def record_commands(lines: bytes, max_batches: int, max_age: int, now: float) -> list[Command]:
    """Append a batch (JSON lines), trimmed by count and by age (both approximate: whole nodes)."""
    return [
        ("XADD", keys.RECORD, "MAXLEN", "~", max_batches, "*", keys.RECORD_ZLIB, pack(lines)),
        ("XTRIM", keys.RECORD, "MINID", "~", int((now - max_age) * 1000)),
    ]


def jsonl(records: list[dict[str, Any]]) -> bytes:
    encode = _COMPACT.encode
    return "".join([encode(record) + "\n" for record in records]).encode()


def pack(lines: bytes) -> bytes:
    packer = zlib.compressobj(LEVEL, zdict=ZDICT)
    return packer.compress(lines) + packer.flush()


def lines(fields: dict[bytes, bytes]) -> list[bytes]:
    """The JSON lines of one entry, as written now (compressed) or by dlrq 0.2 and earlier (plain)."""
    packed = fields.get(keys.RECORD_ZLIB.encode())
    if packed is not None:
        unpacker = zlib.decompressobj(zdict=ZDICT)
        return (unpacker.decompress(packed) + unpacker.flush()).splitlines()
    return fields.get(keys.RECORD_FIELD.encode(), b"").splitlines()
