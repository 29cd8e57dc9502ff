"""What Vonage's DLR err-codes mean (the contract's reference), for people reading figures."""

from __future__ import annotations

MEANINGS = {
    "0": "delivered",
    "1": "unknown",
    "2": "absent subscriber, temporary",
    "3": "absent subscriber, permanent",
    "4": "call barred by user",
    "5": "portability error",
    "6": "anti-spam rejection",
    "7": "handset busy",
    "8": "network error",
    "9": "illegal number",
    "10": "invalid message",
    "11": "unroutable",
    "12": "destination unreachable",
    "13": "subscriber age restriction",
    "14": "number blocked by carrier",
    "15": "prepaid, insufficient funds",
    "16": "gateway quota exceeded",
    "50": "entity filter",
    "51": "header filter",
    "52": "content filter",
    "53": "consent filter",
    "54": "regulation error",
    "99": "general error",
}


def meaning(code: str | None) -> str:
    if code is None or code == "":
        return ""
    return MEANINGS.get(code, "not in Vonage's table")
