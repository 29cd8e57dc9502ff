"""The Messages API's signed callbacks: `Authorization: Bearer <JWT>`, so that only Vonage is believed.

HS256 only, keyed with the account's signature secret (either of two during a rotation); its
`payload_hash` must be the SHA-256 of the body as received (not of the JSON re-serialised), and
its `iat` recent, so that neither a changed body nor a captured callback passes.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import warnings

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from dlrq.core.accounts import Accounts, UnknownAccount

from .signature import Unauthorized

ALGORITHM = "HS256"
# The secret's length is the account's (set at Vonage), not something a log line here could mend.
warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)


def verify_bearer(authorization: bytes | None, body: bytes, accounts: Accounts, now: float, max_skew: int) -> None:
    """Raise Unauthorized unless the callback is signed as its account requires (or need not be)."""
    scheme, _, token = (authorization or b"").decode("latin-1").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        if accounts.signed:
            raise Unauthorized("signature_missing", "this endpoint requires Authorization: Bearer <JWT>")
        return
    try:
        header = jwt.get_unverified_header(token)
        claimed = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise Unauthorized("signature_invalid", f"not a JWT: {exc}") from exc
    if header.get("alg") != ALGORITHM:
        raise Unauthorized("signature_invalid", f"alg must be {ALGORITHM}")
    try:
        account = accounts.select(claimed.get("api_key") if isinstance(claimed.get("api_key"), str) else None)
    except UnknownAccount as exc:
        raise Unauthorized("api_key_mismatch", str(exc)) from exc
    if not account.secrets:
        return
    claims = _verified(token, account.secrets)
    iat = claims.get("iat")
    if not isinstance(iat, (int, float)) or isinstance(iat, bool) or not math.isfinite(iat):
        raise Unauthorized("signature_invalid", "the JWT has no iat (a finite number of seconds)")
    if abs(now - iat) > max_skew:
        raise Unauthorized("signature_stale", f"iat is more than {max_skew} s from now")
    given = claims.get("payload_hash")
    if not isinstance(given, str):
        raise Unauthorized("signature_invalid", "the JWT has no payload_hash")
    if not hmac.compare_digest(given.lower().encode(), hashlib.sha256(body).hexdigest().encode()):
        raise Unauthorized("signature_invalid", "payload_hash does not match the body")


def _verified(token: str, secrets: tuple[str, ...]) -> dict:
    """The claims, if one of the secrets signed them (iat and exp are checked by the caller and PyJWT)."""
    for secret in secrets:
        try:
            return jwt.decode(token, secret, algorithms=[ALGORITHM], options={"verify_iat": False, "verify_aud": False})
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as exc:
            raise Unauthorized("signature_invalid", f"the JWT is not valid: {exc}") from exc
    raise Unauthorized("signature_invalid", "the JWT's signature does not match the account's secret")
