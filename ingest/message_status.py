"""The Messages API's status webhook: a signed JSON callback, read into a receipt."""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.types import Receive, Scope

from dlrq.core import messages_api
from dlrq.core.receipt import MESSAGES, Receipt, utc_now_iso, validate

from .params import parse_json, read_body
from .webhook import Read


def message_statuses(verify: Callable[[bytes | None, bytes, float], None]) -> Read:
    """`verify(authorization, body, now)` checks the JWT against the raw body, before it is parsed."""

    async def read(scope: Scope, receive: Receive) -> Receipt:
        headers = dict(scope["headers"])
        body = await read_body(receive, headers.get(b"content-length"))
        verify(headers.get(b"authorization"), body, time.time())
        doc = parse_json(body, headers.get(b"content-type", b"").decode("latin-1"))
        return Receipt(validate(messages_api.to_params(doc)), utc_now_iso(), MESSAGES)

    return read
