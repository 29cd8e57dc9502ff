"""Turn a webhook request into receipt parameters: query string merged with the body."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope

from dlrq.core import jsondoc
from dlrq.core.receipt import InvalidReceipt, stringify

MAX_BODY = 64 * 1024
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


class BodyTooLarge(InvalidReceipt):
    http_status = 413


class UnsupportedMediaType(InvalidReceipt):
    http_status = 415


def parse_pairs(raw: bytes, where: str) -> dict[str, str]:
    """`name=value&...`; a name given twice is refused: which value would be the receipt's?"""
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError as exc:
        raise InvalidReceipt("bad_encoding", f"{where} is not valid UTF-8 percent-encoding") from exc
    params = dict(pairs)
    if len(params) != len(pairs):
        name = jsondoc.repeated(name for name, _ in pairs)
        raise InvalidReceipt("malformed_field", f"{name!r} is given twice in the {where}")
    return params


def parse_query(raw: bytes) -> dict[str, str]:
    return parse_pairs(raw, "query string") if raw else {}


def media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def parse_json(body: bytes, content_type: str) -> Any:
    kind = media_type(content_type)
    if kind != JSON:
        raise UnsupportedMediaType("unsupported_media_type", f"content type {kind or 'missing'!r}; send {JSON}")
    return jsondoc.loads(body)


def parse_body(body: bytes, content_type: str) -> dict[str, str]:
    kind = media_type(content_type)
    if kind == JSON:
        obj = parse_json(body, content_type)
        if not isinstance(obj, dict):
            raise InvalidReceipt("not_an_object", "JSON body must be an object")
        return stringify(obj)
    if kind == FORM:
        return parse_pairs(body, "form body")
    raise UnsupportedMediaType(
        "unsupported_media_type", f"content type {kind or 'missing'!r}; send {JSON} or {FORM}"
    )


async def read_body(receive: Receive, declared_length: bytes | None, limit: int = MAX_BODY) -> bytes:
    """Read at most `limit` bytes: an oversized body is cut off, never buffered whole."""
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
        raise BodyTooLarge("body_too_large", f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge("body_too_large", f"body over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def request_params(scope: Scope, receive: Receive) -> dict[str, str]:
    """Body values win over query values of the same name."""
    params = parse_query(scope["query_string"])
    if scope["method"] == "POST":
        headers = dict(scope["headers"])
        body = await read_body(receive, headers.get(b"content-length"))
        if body:
            params.update(parse_body(body, headers.get(b"content-type", b"").decode("latin-1")))
    return params
