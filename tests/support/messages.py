"""Messages API status callbacks as Vonage sends them, and their JWTs, made with PyJWT."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
import warnings

import jwt
from jwt.warnings import InsecureKeyLengthWarning

# Shaped as the status callback examples of Vonage's Messages API guide (an SMS of two parts, submitted).
SUBMITTED = {
    "message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    "to": "447700900000",
    "from": "447700900001",
    "timestamp": "2023-05-01T14:00:00.000Z",
    "status": "submitted",
    "usage": {"currency": "EUR", "price": "0.0333"},
    "client_ref": "campaign-7",
    "channel": "sms",
    "destination": {"network_code": "23410"},
    "sms": {"count_total": "2"},
}
DELIVERED = {**SUBMITTED, "status": "delivered", "timestamp": "2023-05-01T14:00:04.000Z"}
# The Java SDK's tests send the error's title as a number.
REJECTED = {**SUBMITTED, "status": "rejected", "timestamp": "2023-05-01T14:00:06Z",
            "error": {"type": "https://developer.vonage.com/api-errors/messages#1360", "title": 1360,
                      "detail": "TTL was activated, no delivery receipt was received", "instance": "i-1"}}


def body(doc: dict) -> bytes:
    return json.dumps(doc).encode()


def token(raw: bytes, secret: str, api_key: str = "7c47b66b", iat: float | None = None, algorithm: str = "HS256",
          payload_hash: str | None = None) -> str:
    """A JWT as Vonage signs a callback: over the body's SHA-256, with the account's key."""
    claims = {
        "iat": int(time.time() if iat is None else iat),
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "payload_hash": payload_hash or hashlib.sha256(raw).hexdigest(),
        "api_key": api_key,
        "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)  # HS512 wants a longer key: these are refused anyway
        return jwt.encode(claims, secret if algorithm != "none" else None, algorithm=algorithm)
