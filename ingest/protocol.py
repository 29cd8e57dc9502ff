"""HTTP for a public endpoint: uvicorn's httptools protocol with the limits it lacks.

The webhook faces the internet. uvicorn reads a request line and headers of any size and
waits for them as long as a client likes, and accepts connections until the process runs out
of file descriptors: one client could stall every receipt or grow the ingest without bound.
Here a request's line and headers are capped (414, 431) and must arrive within the header
timeout (of the connection, or of the request's first byte on a kept-alive connection), its
body within the body timeout of its head, and connections beyond the cap are answered 503 at
once and closed.

The hot path pays one attribute set per request and one test per chunk read: the timeouts are
enforced by one sweep a second over all connections, not by a timer per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from dlrq.core.settings import Settings, get_settings

log = logging.getLogger("dlrq.ingest")
# File descriptors kept free for Redis connections, logs and the like when the cap is derived.
FD_RESERVE = 64
SWEEP_EVERY = 1.0


@dataclass(frozen=True)
class Limits:
    max_head: int  # bytes of request line and headers together
    max_url: int
    head_timeout: float
    body_timeout: float
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(max_head=settings.max_header_bytes, max_url=settings.max_url_bytes,
                   head_timeout=settings.header_timeout, body_timeout=settings.body_timeout,
                   max_connections=connection_cap(settings.max_connections))


def connection_cap(wanted: int) -> int:
    """Raise the soft open-file limit to the hard one, and keep the connections below it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return max(1, min(wanted, soft - FD_RESERVE))


def refusal(status: int, code: str, detail: str) -> bytes:
    body = json.dumps({"error": code, "detail": detail}).encode()
    return b"".join([STATUS_LINE[status], b"content-type: application/json\r\n",
                     b"content-length: ", str(len(body)).encode(), b"\r\nconnection: close\r\n\r\n", body])


class _Quiet:
    """uvicorn's logger for a connection, with its warnings ("Invalid HTTP request received.", for a
    refusal of dlrq's or a client's garbage) at DEBUG: anyone can cause them, as fast as they like.
    Everything else (an application's error) goes to uvicorn's logger as it would."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def warning(self, msg: str, *args: object) -> None:
        log.debug(msg, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._logger, name)


_QUIET = _Quiet(logging.getLogger("uvicorn.error"))


class GuardedHttp(HttpToolsProtocol):
    """The protocol class uvicorn instantiates for each connection (`http="ingest.protocol:GuardedHttp"`,
    so that each of several ingest processes builds it from its own settings)."""

    limits: Limits | None = None  # read from the settings by the first connection of the process
    at_cap = False  # the cap is logged once per time it is reached
    sweeping = False
    _head_since: float | None = None  # a request head is awaited since then
    _body_since: float | None = None  # the current request's body is awaited since then
    _head_bytes = 0  # bytes received while the head was incomplete
    _reading = 0  # bytes of the read being parsed
    _refusal: bytes | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.logger = _QUIET  # type: ignore[assignment]
        limits = self._limits()
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
        self._head_since = time.monotonic()
        if not GuardedHttp.sweeping:
            GuardedHttp.sweeping = True
            self.loop.call_later(SWEEP_EVERY, _sweep, self.loop, self.connections)

    def data_received(self, data: bytes) -> None:
        self._reading = len(data)
        super().data_received(data)
        if self._head_since is not None and self._refusal is None:
            # httptools keeps a header whole until it ends: count what arrives while a head is incomplete.
            self._head_bytes += len(data)
            limits = self._limits()
            if self._head_bytes > limits.max_head:
                self._refuse(431, "headers_too_large", f"request line and headers over {limits.max_head} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_since is None:
            self._head_since = time.monotonic()
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        limits = self._limits()
        if len(self.url) + len(url) > limits.max_url:
            # httptools stops parsing, and uvicorn calls send_400_response
            self._stop_parsing(refusal(414, "url_too_long", f"request line over {limits.max_url} bytes"))
        super().on_url(url)

    def _stop_parsing(self, answer: bytes) -> None:
        self._refusal = answer
        raise ValueError("refused")  # httptools stops, and uvicorn calls send_400_response

    def on_headers_complete(self) -> None:
        """A head that arrives in one read is parsed whole before data_received can count it: when what
        arrived could hold a head over the limit, the head is measured (one comparison otherwise)."""
        limits = self._limits()
        if self._head_bytes + self._reading > limits.max_head:
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > limits.max_head:
                too_large = f"request line and headers over {limits.max_head} bytes"
                self._stop_parsing(refusal(431, "headers_too_large", too_large))
        self._head_since = None
        self._body_since = time.monotonic()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn answers 400 to any error raised while parsing: dlrq's refusals carry their own answer."""
        if self._refusal is None:
            super().send_400_response(msg)
            return
        self.transport.write(self._refusal)
        self.transport.close()

    def late(self, now: float) -> None:
        """Close the connection if its request's head or body is late (with a 408 if it began one)."""
        limits = self._limits()
        if self._head_since is not None and now - self._head_since > limits.head_timeout:
            if self.scope is not None and self._head_bytes:
                self._refuse(408, "request_timeout", f"request head not received within {limits.head_timeout} s")
            self.transport.close()
        elif (self._body_since is not None and self.cycle is not None and self.cycle.more_body
              and not self.cycle.response_started and now - self._body_since > limits.body_timeout):
            self._refuse(408, "request_timeout", f"request body not received within {limits.body_timeout} s")

    def _refuse(self, status: int, code: str, detail: str) -> None:
        self._refusal = refusal(status, code, detail)
        self.send_400_response(detail)

    def _limits(self) -> Limits:
        if GuardedHttp.limits is None:
            GuardedHttp.limits = Limits.of(get_settings())
        return GuardedHttp.limits


def _sweep(loop: asyncio.AbstractEventLoop, connections: set[object]) -> None:
    now = time.monotonic()
    for connection in list(connections):
        if isinstance(connection, GuardedHttp) and not connection.transport.is_closing():
            connection.late(now)
    loop.call_later(SWEEP_EVERY, _sweep, loop, connections)
