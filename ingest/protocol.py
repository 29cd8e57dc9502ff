"""HTTP for a public endpoint: uvicorn's httptools protocol with the limits it lacks.

The webhook faces the internet. uvicorn reads a request line and headers of any size and
waits for them as long as a client likes, and accepts connections until the process runs out
of file descriptors: one client could stall every receipt or grow the ingest without bound.
Here a request's line and headers are capped (414, 431) and must arrive within `head_timeout`
seconds (of the connection, or of the request's first byte on a kept-alive connection), its
body within `body_timeout` seconds of its head, and connections beyond `max_connections` are
answered 503 at once and closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger("dlrq.ingest")
# File descriptors kept free for Redis connections, logs and the like when the cap is derived.
FD_RESERVE = 64


@dataclass(frozen=True)
class Limits:
    max_head: int  # bytes of request line and headers together
    max_url: int
    head_timeout: float
    body_timeout: float
    max_connections: int


def connection_cap(wanted: int) -> int:
    """Raise the soft open-file limit to the hard one, and keep the connections below it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return max(1, min(wanted, soft - FD_RESERVE))


class _Quiet:
    """Where uvicorn's own "Invalid HTTP request received." goes when dlrq refused the request on purpose."""

    level = logging.WARNING

    def warning(self, msg: str, *args: object) -> None:
        log.debug(msg, *args)


_QUIET = _Quiet()


def refusal(status: int, code: str, detail: str) -> bytes:
    body = json.dumps({"error": code, "detail": detail}).encode()
    return b"".join([STATUS_LINE[status], b"content-type: application/json\r\n",
                     b"content-length: ", str(len(body)).encode(), b"\r\nconnection: close\r\n\r\n", body])


def guarded(limits: Limits) -> type[HttpToolsProtocol]:
    """The protocol class uvicorn instantiates for each connection, with these limits."""

    class GuardedHttp(HttpToolsProtocol):
        at_cap = False  # shared by every connection: the cap is logged once per time it is reached
        _head_timer: asyncio.TimerHandle | None = None
        _body_timer: asyncio.TimerHandle | None = None
        _refusal: bytes | None = None
        _head_bytes = 0
        _begun = False
        _in_head = True  # until the head of the current request is complete

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                if not GuardedHttp.at_cap:
                    GuardedHttp.at_cap = True
                    log.warning("%d connections open: the cap (DLRQ_MAX_CONNECTIONS, below the open-file limit) "
                                "is reached; new connections are answered 503 and closed", limits.max_connections)
                transport.write(refusal(503, "too_many_connections", "the server is at its connection limit"))
                transport.close()
                return
            if GuardedHttp.at_cap and len(self.connections) < limits.max_connections * 0.9:
                GuardedHttp.at_cap = False
                log.warning("connections back under the cap (%d open)", len(self.connections))
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            self._body_done()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._in_head and self._refusal is None and not self.transport.is_closing():
                # httptools keeps a header whole until it ends: count what arrives while the head is incomplete.
                self._head_bytes += len(data)
                if self._head_bytes > limits.max_head:
                    self._refusal = refusal(431, "headers_too_large",
                                            f"request line and headers over {limits.max_head} bytes")
                    self.send_400_response("")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_bytes, self._begun, self._in_head = 0, True, True
            if self._head_timer is None:
                self._arm()

        def on_url(self, url: bytes) -> None:
            if len(self.url) + len(url) > limits.max_url:
                self._refuse(414, "url_too_long", f"request line over {limits.max_url} bytes")
            super().on_url(url)

        def on_headers_complete(self) -> None:
            self._disarm()
            self._begun = self._in_head = False
            self._body_timer = self.loop.call_later(limits.body_timeout, self._body_late)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._body_done()
            super().on_message_complete()

        def _body_done(self) -> None:
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None

        def _body_late(self) -> None:
            """A body still incomplete after body_timeout: 408, and the connection is closed (the
            request handler sees a disconnect; nothing was stored, so nothing was acknowledged)."""
            self._body_timer = None
            if not self.transport.is_closing() and self.cycle is not None and not self.cycle.response_started:
                detail = f"body not received within {limits.body_timeout} s"
                self.transport.write(refusal(408, "request_timeout", detail))
            self.transport.close()
        def send_400_response(self, msg: str) -> None:
            """uvicorn answers 400 to any error raised while parsing: ours carry their own answer."""
            if self._refusal is None:
                super().send_400_response(msg)
                return
            self.transport.write(self._refusal)
            self.transport.close()

        def _refuse(self, status: int, code: str, detail: str) -> None:
            self._refusal = refusal(status, code, detail)
            self.logger = _QUIET  # type: ignore[assignment]  # a refusal is logged at DEBUG: anyone can cause one
            raise ValueError(detail)  # httptools stops parsing, and uvicorn calls send_400_response

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(limits.head_timeout, self._head_late)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_late(self) -> None:
            """A connection that has not sent a whole request head in time is closed (with a 408 if it began one)."""
            self._head_timer = None
            if self.transport.is_closing():
                return
            if self._begun:
                self.transport.write(refusal(408, "request_timeout",
                                             f"request line and headers not received within {limits.head_timeout} s"))
            self.transport.close()

    return GuardedHttp
