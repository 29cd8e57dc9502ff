"""Vonage's signed-webhook scheme, so that only Vonage is believed."""

from __future__ import annotations

import hashlib
import hmac

from dlrq.core.receipt import InvalidReceipt

HMAC_DIGESTS = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
METHODS = ("md5hash", *HMAC_DIGESTS)
# Unix seconds have ten digits until the year 2286; thousands of them are not a time (and Python
# refuses to read an int of over 4,300 digits).
MAX_TIMESTAMP_DIGITS = 12


class Unauthorized(InvalidReceipt):
    """The sender could not prove it is Vonage."""

    http_status = 401


def signing_string(params: dict[str, str]) -> str:
    """Every parameter but `sig`, sorted by name, as `&name=value`, with `&` and `=` in values made `_`."""
    return "".join(
        f"&{name}={params[name].replace('&', '_').replace('=', '_')}" for name in sorted(params) if name != "sig"
    )


def sign(params: dict[str, str], secret: str, method: str) -> str:
    payload = signing_string(params)
    if method == "md5hash":
        return hashlib.md5((payload + secret).encode()).hexdigest()
    if method not in HMAC_DIGESTS:
        raise ValueError(f"unknown signature method {method!r}; one of {', '.join(METHODS)}")
    return hmac.new(secret.encode(), payload.encode(), HMAC_DIGESTS[method]).hexdigest()


def verify(params: dict[str, str], secrets: tuple[str, ...], method: str, now: float, max_skew: int) -> None:
    """Raise Unauthorized unless `sig` is right (by one of the secrets: two during a rotation) and
    `timestamp` is recent, so a captured receipt cannot be replayed."""
    sig = params.get("sig")
    if not sig:
        raise Unauthorized("signature_missing", "this endpoint requires signed receipts (sig)")
    timestamp = params.get("timestamp", "")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= MAX_TIMESTAMP_DIGITS):
        raise Unauthorized("signature_invalid", "signed receipts need a unix timestamp (seconds)")
    given = sig.lower().encode()
    # Every secret is tried, so that the time taken does not tell which one matched.
    matches = [hmac.compare_digest(given, sign(params, secret, method).encode()) for secret in secrets]
    if not any(matches):
        raise Unauthorized("signature_invalid", "sig does not match the parameters")
    if abs(now - int(timestamp)) > max_skew:
        raise Unauthorized("signature_stale", f"timestamp is more than {max_skew} s from now")
