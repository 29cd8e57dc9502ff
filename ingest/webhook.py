"""The receipt endpoints (SMS API receipts, Messages API status callbacks), as plain ASGI apps.

They are the hot path, and Starlette's Request and Response objects cost more
than reading the receipt does; every other route uses them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from dlrq.core.receipt import InvalidReceipt, Receipt, utc_now_iso

from .batcher import StorageUnavailable
from .errors import error
from .metrics import IngestMetrics
from .params import request_params

REQUEST_ID = b"x-request-id"
# Reads a request into a receipt, or raises InvalidReceipt (Unauthorized included).
Read = Callable[[Scope, Receive], Awaitable[Receipt]]

log = logging.getLogger("dlrq.ingest")


def sms_receipts(check: Callable[[dict[str, str]], dict[str, str]]) -> Read:
    """An SMS API delivery receipt: query string and body merged, then checked (signature, account)."""

    async def read(scope: Scope, receive: Receive) -> Receipt:
        return Receipt(check(await request_params(scope, receive)), utc_now_iso())

    return read


class Webhook:
    """Acknowledge a receipt once it is stored (503 when it cannot be), whichever API sent it.

    Refusals are counted, not logged above DEBUG: anyone can send them, as fast as they like.
    """

    def __init__(self, read: Read, methods: tuple[str, ...], ack_status: int, retry_after: int,
                 metrics: IngestMetrics, admits: Callable[[Scope], bool] | None = None) -> None:
        """`admits`: whether a request's sender may post receipts at all (DLRQ_WEBHOOK_ALLOW); None: anyone."""
        self._read = read
        self._admits = admits
        self._methods = methods
        self._allow = {"Allow": ", ".join(methods)}
        self._ack_status = ack_status
        self._ack_headers = [] if ack_status == 204 else [(b"content-length", b"0")]
        self._unavailable = {"Retry-After": str(retry_after)}
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        if self._admits is not None and not self._admits(scope):
            return await self._refuse(403, "forbidden", "this address may not post receipts (DLRQ_WEBHOOK_ALLOW)")(
                scope, receive, send)
        if scope["method"] not in self._methods:
            return await self._refuse(405, "method_not_allowed", f"use {' or '.join(self._methods)}",
                                      self._allow)(scope, receive, send)
        try:
            receipt = await self._read(scope, receive)
        except InvalidReceipt as exc:
            return await self._refuse(exc.http_status, exc.code, exc.detail)(scope, receive, send)
        except ClientDisconnect:
            return None
        state = scope["app"].state
        if state.watch.unsafe:
            return await self._refuse(503, "storage_unavailable", state.watch.unsafe, self._unavailable)(
                scope, receive, send)
        try:
            request_id = await state.commit.submit(receipt)
        except StorageUnavailable:
            response = self._refuse(503, "storage_unavailable", "receipt not stored; send it again", self._unavailable)
            return await response(scope, receive, send)
        headers = [*self._ack_headers, (REQUEST_ID, request_id.encode())]
        await send({"type": "http.response.start", "status": self._ack_status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        params = receipt.params
        self._metrics.accepted(params["status"], time.perf_counter() - started)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("receipt %s accepted: message %s %s", request_id, params["messageId"], params["status"],
                      extra={"request_id": request_id, "message_id": params["messageId"], "status": params["status"]})

    def _refuse(self, status: int, reason: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
        self._metrics.refused(reason)
        log.debug("request refused: %s: %s", reason, detail, extra={"reason": reason})
        return error(status, reason, detail, headers)
