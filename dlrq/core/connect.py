"""Redis clients from the settings: one place decides how every part of dlrq connects.

With DLRQ_REDIS_SENTINELS the primary is found through the sentinels, and found again after a
failover without a restart (DLRQ_REDIS_URL still gives the password, database and TLS);
otherwise DLRQ_REDIS_URL names the server itself.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import NoBackoff
from redis.connection import SSLConnection, parse_url
from redis.exceptions import OutOfMemoryError, ReadOnlyError
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from .settings import Settings

# Longest wait for any answer from the workers' and the command line's connections: long enough
# for the slowest batch (well under a second), short enough that a frozen primary is given up on
# and the sentinels asked again soon after they have promoted a replica (about 3 s).
ANSWER_TIMEOUT = 5
# How long a sentinel may take to answer "who is the primary?".
SENTINEL_TIMEOUT = 0.5


def async_client(settings: Settings) -> aioredis.Redis:
    """Fail fast: a request must get its 503 within about a second, never hang."""
    timeouts = {"socket_connect_timeout": settings.store_timeout, "socket_timeout": settings.store_timeout,
                "retry": AsyncRetry(NoBackoff(), 1)}
    if settings.redis_sentinels:
        sentinel = AsyncSentinel(settings.sentinel_addresses, sentinel_kwargs=_sentinel_kwargs(settings))
        return sentinel.master_for(settings.redis_master, **_server_kwargs(settings), **timeouts)
    return aioredis.from_url(settings.effective_redis_url, **timeouts)


def client(settings: Settings) -> redis.Redis:
    """For the workers and the command line, which may wait for a slow answer."""
    timeouts = {"socket_connect_timeout": 5, "socket_timeout": ANSWER_TIMEOUT, "retry": Retry(NoBackoff(), 1)}
    if settings.redis_sentinels:
        sentinel = Sentinel(settings.sentinel_addresses, sentinel_kwargs=_sentinel_kwargs(settings))
        kwargs = _server_kwargs(settings)
        kwargs["connection_class"] = SentinelTLSConnection if kwargs.pop("ssl", False) else SentinelConnection
        return sentinel.master_for(settings.redis_master, **kwargs, **timeouts)
    return redis.Redis.from_url(settings.effective_redis_url, **timeouts)


class SentinelConnection(SentinelManagedConnection):
    """Closed when a read is cut short, as every other redis-py connection is. redis-py's own
    sentinel-managed one stays open (its `disconnect_on_error` defaults to False), so when a job's
    timeout interrupts a worker waiting on a frozen primary, the late reply stays in the socket
    and is read, once the primary wakes, as the answer to the next command sent on it."""

    def read_response(self, disable_decoding: bool = False, *, disconnect_on_error: bool | None = True,
                      **kwargs: Any) -> Any:
        return super().read_response(disable_decoding, disconnect_on_error=disconnect_on_error, **kwargs)


class SentinelTLSConnection(SentinelConnection, SSLConnection):
    pass


def _server_kwargs(settings: Settings) -> dict[str, Any]:
    """What DLRQ_REDIS_URL says beyond where the server is: credentials, database, TLS."""
    kwargs = parse_url(settings.effective_redis_url)
    kwargs.pop("host", None)
    kwargs.pop("port", None)
    kwargs.pop("path", None)
    if kwargs.pop("connection_class", None) is SSLConnection:
        kwargs["ssl"] = True
    return kwargs


def _sentinel_kwargs(settings: Settings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT}
    if settings.redis_sentinel_password is not None:
        kwargs["password"] = settings.redis_sentinel_password.get_secret_value()
    return kwargs


# Answers of a server that will take writes again by itself: full disk (MISCONF), memory
# (OOM), too few replicas (NOREPLICAS), a replica or a demoted primary (READONLY), a primary
# lost by its replica (MASTERDOWN), an append-only file being loaded (LOADING), a primary
# just promoted that has not seen a script yet (NOSCRIPT, sent again whole by calls.Script).
TRANSIENT_CODES = ("MISCONF", "OOM", "NOREPLICAS", "READONLY", "MASTERDOWN", "LOADING", "NOSCRIPT")


def is_transient(exc: BaseException) -> bool:
    """Whether Redis failed in a way that waiting cures: unreachable (MasterNotFoundError included),
    a failover under way, or refusing writes for now."""
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OutOfMemoryError, ReadOnlyError)):
        return True
    if isinstance(exc, redis.ResponseError):
        text = str(exc)
        # A script's error may come wrapped: "Error running script ...: -MISCONF ..."
        return any(text.startswith(code) or f"-{code}" in text or f" {code} " in text for code in TRANSIENT_CODES)
    return False
