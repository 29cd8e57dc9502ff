"""Redis clients from the settings: one place decides how every part of dlrq connects."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
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


def client(settings: Settings) -> redis.Redis:
    """For the workers and the command line, which may wait for a slow answer."""
    return redis.Redis.from_url(settings.effective_redis_url, socket_connect_timeout=5, retry=Retry(NoBackoff(), 1))
