"""Turn a webhook request into receipt parameters: query string merged with the body."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope

from dlrq.core.receipt import InvalidReceipt, stringify

MAX_BODY = 64 * 1024
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


class BodyTooLarge(InvalidReceipt):
    http_status = 413


class UnsupportedMediaType(InvalidReceipt):
    http_status = 415


def parse_query(raw: bytes) -> dict[str, str]:
    if not raw:
        return {}
    try:
        return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict"))
    except UnicodeDecodeError as exc:
        raise InvalidReceipt("bad_encoding", "query string is not valid UTF-8 percent-encoding") from exc


def media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def parse_json(body: bytes, content_type: str) -> Any:
    kind = media_type(content_type)
    if kind != JSON:
        raise UnsupportedMediaType("unsupported_media_type", f"content type {kind or 'missing'!r}; send {JSON}")
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        raise InvalidReceipt("bad_encoding", "body is not valid UTF-8") from exc
    except ValueError as exc:
        raise InvalidReceipt("bad_json", f"body is not valid JSON: {exc}") from exc


def parse_body(body: bytes, content_type: str) -> dict[str, str]:
    kind = media_type(content_type)
    if kind == JSON:
        obj = parse_json(body, content_type)
        if not isinstance(obj, dict):
            raise InvalidReceipt("not_an_object", "JSON body must be an object")
        return stringify(obj)
    if kind == FORM:
        try:
            return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict"))
        except UnicodeDecodeError as exc:
            raise InvalidReceipt("bad_encoding", "form body is not valid UTF-8 percent-encoding") from exc
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
