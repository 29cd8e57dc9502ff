"""The receipt endpoint, as a plain ASGI app.

It is the hot path, and Starlette's Request and Response objects cost more
than reading the receipt does; every other route uses them.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from .batcher import StorageUnavailable
from .params import request_params
from .receipt import InvalidReceipt, Receipt, utc_now_iso

METHODS = ("GET", "POST")
ALLOW = {"Allow": ", ".join(METHODS)}


def error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


class Webhook:
    def __init__(self, check: Callable[[dict[str, str]], dict[str, str]], ack_status: int, retry_after: int) -> None:
        self._check = check
        self._ack = {"type": "http.response.start", "status": ack_status,
                     "headers": [] if ack_status == 204 else [(b"content-length", b"0")]}
        self._unavailable = {"Retry-After": str(retry_after)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in METHODS:
            return await error(405, "method_not_allowed", "use GET or POST", ALLOW)(scope, receive, send)
        try:
            params = self._check(await request_params(scope, receive))
        except InvalidReceipt as exc:
            return await error(exc.http_status, exc.code, exc.detail)(scope, receive, send)
        except ClientDisconnect:
            return None
        try:
            await scope["app"].state.commit.submit(Receipt(params, utc_now_iso()))
        except StorageUnavailable:
            response = error(503, "storage_unavailable", "receipt not stored; send it again", self._unavailable)
            return await response(scope, receive, send)
        await send(self._ack)
        await send({"type": "http.response.body", "body": b""})
