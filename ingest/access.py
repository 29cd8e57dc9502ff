"""Who may use the management routes and the console: the API token, with a bound on wrong guesses.

A client that sends a wrong token (or a wrong sign-in) GUESSES times within GUESS_WINDOW seconds is
refused everything (429) until its window ends: the right token too, or a guesser would learn it
was right. Clients are told apart by address (behind a trusted proxy, by X-Forwarded-For); the
table of addresses is bounded, so that a spray of addresses cannot grow it.
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

from dlrq.core.settings import Settings

from .errors import error

LOOPBACK_NAMES = ("localhost",)
GUESSES = 10
GUESS_WINDOW = 60.0
# Addresses remembered at once; the oldest windows are forgotten first.
TRACKED = 10_000

Network = IPv4Network | IPv6Network


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ip_network(cidr, strict=False) for cidr in cidrs)


def within(address: str, allowed: tuple[Network, ...]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in allowed)


def client_address(peer: str, forwarded_for: str | None, proxies: tuple[Network, ...]) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the nearest address
    in X-Forwarded-For that is not one (the ones before it are the client's to write)."""
    if not proxies or not within(peer, proxies) or not forwarded_for:
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not within(hop, proxies):
            return hop
    return peer


class Guesses:
    """Wrong tokens by client address, in fixed windows."""

    def __init__(self, limit: int = GUESSES, window: float = GUESS_WINDOW) -> None:
        self._limit, self._window = limit, window
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def _now(self, client: str, now: float) -> tuple[float, int]:
        started, count = self._seen.get(client, (now, 0))
        return (now, 0) if now - started >= self._window else (started, count)

    def wait(self, client: str, now: float | None = None) -> float:
        """Seconds until `client` may try again (0: now)."""
        now = time.monotonic() if now is None else now
        started, count = self._now(client, now)
        return max(0.0, started + self._window - now) if count >= self._limit else 0.0

    def wrong(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        started, count = self._now(client, now)
        self._seen.pop(client, None)
        self._seen[client] = (started, count + 1)
        while len(self._seen) > TRACKED:
            self._seen.popitem(last=False)


class Access:
    """The token check every management route and the console's sign-in share."""

    def __init__(self, settings: Settings, host: str) -> None:
        self._token = settings.api_token.get_secret_value().encode() if settings.api_token else None
        self._proxies = networks(settings.trusted_proxies)
        # Without a token, the management routes are open only to this machine.
        self.closed = self._token is None and not is_loopback(host)
        self.guesses = Guesses()

    def client(self, connection: HTTPConnection) -> str:
        peer = connection.client.host if connection.client else ""
        return client_address(peer, connection.headers.get("x-forwarded-for"), self._proxies)

    def matches(self, given: str) -> bool:
        return self._token is not None and hmac.compare_digest(given.strip().encode(), self._token)

    def refusal(self, connection: HTTPConnection) -> JSONResponse | None:
        """None if the request may go on; else its 401 or 429."""
        if self._token is None:
            if not self.closed:
                return None
            return error(401, "unauthorized", "the management API is closed: set DLRQ_API_TOKEN to open it")
        client = self.client(connection)
        wait = self.guesses.wait(client)
        if wait:
            return error(429, "too_many_guesses", f"too many wrong tokens from {client}: try again in {wait:.0f} s",
                         {"Retry-After": str(int(wait) + 1)})
        scheme, _, given = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given.strip():
            if self.matches(given):
                return None
            self.guesses.wrong(client)
        return error(401, "unauthorized", "send Authorization: Bearer <DLRQ_API_TOKEN>")
