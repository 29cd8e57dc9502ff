"""Every error code an answer of dlrq can carry, with its HTTP status and meaning, named once.

Each refusal answers `{"error": "<code>", "detail": "<human text>"}`; the code is one of these.
The documentation's table of them is made from this list, and a test holds the code to it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    code: str
    status: int
    meaning: str


CODES = {e.code: e for e in (
    ErrorCode("bad_json", 400, "the body is not JSON, is nested too deeply, or holds a number out of range "
                               "(1e999) or NaN"),
    ErrorCode("not_an_object", 400, "the JSON body (or a replayed line) is not an object"),
    ErrorCode("missing_field", 400, "a required field is missing or empty (a receipt's `messageId` or `status`, a "
                                    "send's `messages`)"),
    ErrorCode("malformed_field", 400, "a field has the wrong shape: a `messageId` outside its alphabet, an "
                                      "`err-code` not digits, a `price` not a decimal from 0 to 1000, a "
                                      "`message-timestamp` that is not a time or is more than a day ahead, a "
                                      "field given twice, a value that is not flat; on the api, a time "
                                      "(`since`, `until`) that is not one"),
    ErrorCode("bad_encoding", 400, "the body or a value is not valid UTF-8"),
    ErrorCode("malformed_record", 400, "(replay and the worker) a recorded line is not `{received_at, params}`, or "
                                       "its `received_at` is out of range"),
    ErrorCode("signature_missing", 401, "the account signs its webhooks and this request carries no `sig` (or no "
                                        "`Authorization: Bearer` JWT)"),
    ErrorCode("signature_invalid", 401, "the signature does not match, or its timestamp is not a unix time"),
    ErrorCode("signature_stale", 401, "the signed `timestamp` (or the JWT's `iat`) is more than "
                                      "`DLRQ_SIGNATURE_MAX_SKEW` from now"),
    ErrorCode("api_key_mismatch", 401, "the receipt's `api-key` is not the configured one (or not in "
                                       "`DLRQ_ACCOUNTS_FILE`)"),
    ErrorCode("unauthorized", 401, "a management route without the right `Authorization: Bearer <DLRQ_API_TOKEN>`, "
                                   "or with no token set while listening beyond loopback"),
    ErrorCode("forbidden", 403, "the sender's address is not in `DLRQ_WEBHOOK_ALLOW`"),
    ErrorCode("not_found", 404, "no such route, or no receipt or registration for this id"),
    ErrorCode("unknown_message", 404, "`retry_of` names a message that was never registered"),
    ErrorCode("method_not_allowed", 405, "the receipt webhook takes GET and POST, the Messages API's POST"),
    ErrorCode("request_timeout", 408, "the request's head or body did not arrive within `DLRQ_HEADER_TIMEOUT` / "
                                      "`DLRQ_BODY_TIMEOUT`"),
    ErrorCode("conflict", 409, "a part of this send already belongs to another message"),
    ErrorCode("too_many_attempts", 409, "the message already has the most attempts one may have (100)"),
    ErrorCode("body_too_large", 413, "the body is over 64 KiB (cut off while reading)"),
    ErrorCode("url_too_long", 414, "the request line is over `DLRQ_MAX_URL_BYTES`"),
    ErrorCode("unsupported_media_type", 415, "the body is neither `application/json` nor "
                                             "`application/x-www-form-urlencoded`"),
    ErrorCode("too_many_guesses", 429, "ten wrong tokens (or console sign-ins) from this client within a minute: "
                                       "everything it sends is refused until the minute is over (`Retry-After`)"),
    ErrorCode("headers_too_large", 431, "the request line and headers are over `DLRQ_MAX_HEADER_BYTES`"),
    ErrorCode("internal_error", 500, "a bug: logged with its traceback (no route answers a plain-text 500)"),
    ErrorCode("storage_unavailable", 503, "Redis is unreachable, refuses writes, may evict, or is over the memory "
                                          "high-water mark: nothing was stored (`Retry-After`; Vonage resends)"),
    ErrorCode("too_many_connections", 503, "the ingest holds `DLRQ_MAX_CONNECTIONS` connections already"),
    ErrorCode("http_error", 400, "any other HTTP-level refusal Starlette makes (its status as given)"),
)}
