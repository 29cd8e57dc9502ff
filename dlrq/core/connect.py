"""Redis clients from the settings: one place decides how every part of dlrq connects."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import OutOfMemoryError, ReadOnlyError
from redis.retry import Retry

from .settings import Settings


def async_client(settings: Settings) -> aioredis.Redis:
    """Fail fast: a request must get its 503 within about a second, never hang."""
    return aioredis.from_url(
        settings.effective_redis_url,
        socket_connect_timeout=settings.store_timeout,
        socket_timeout=settings.store_timeout,
        retry=AsyncRetry(NoBackoff(), 1),
    )


# Longest wait for any answer from the workers' and the command line's connections: long enough
# for the slowest batch, short enough that a frozen server is noticed (and a stop obeyed).
ANSWER_TIMEOUT = 10


def client(settings: Settings) -> redis.Redis:
    """For the workers and the command line, which may wait for a slow answer."""
    return redis.Redis.from_url(settings.effective_redis_url, socket_connect_timeout=5,
                                socket_timeout=ANSWER_TIMEOUT, retry=Retry(NoBackoff(), 1))


# Answers of a server that will take writes again by itself: full disk (MISCONF), memory
# (OOM), too few replicas (NOREPLICAS), a replica or a demoted primary (READONLY), a primary
# lost by its replica (MASTERDOWN), an append-only file being loaded (LOADING).
TRANSIENT_CODES = ("MISCONF", "OOM", "NOREPLICAS", "READONLY", "MASTERDOWN", "LOADING")


def is_transient(exc: BaseException) -> bool:
    """Whether Redis failed in a way that waiting cures: unreachable, or refusing writes for now."""
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OutOfMemoryError, ReadOnlyError)):
        return True
    if isinstance(exc, redis.ResponseError):
        text = str(exc)
        # A script's error may come wrapped: "Error running script ...: -MISCONF ..."
        return any(text.startswith(code) or f"-{code}" in text or f" {code} " in text for code in TRANSIENT_CODES)
    return False
