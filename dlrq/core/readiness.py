"""Whether Redis can hold what dlrq acknowledges: it takes a write, and it never evicts.

A server that evicts keys under memory pressure (any maxmemory-policy but noeviction)
may drop queued batches that were acknowledged: Vonage would never send them again.
The ingest's /readyz, the workers (which wait until it holds) and `dlrq stats` ask the same.
"""

from __future__ import annotations

import time

from redis.exceptions import ResponseError

from . import keys
from .calls import Steps

SAFE_POLICY = "noeviction"
READY_TTL = 60


def problem() -> Steps[str | None]:
    """Why Redis cannot be trusted with receipts now, or None. (Unreachable: the driver raises.)"""
    try:
        yield ("SET", keys.READY, str(time.time()), "EX", READY_TTL)
    except ResponseError as exc:
        return f"Redis refuses writes: {exc}"
    info = yield ("INFO", "memory")
    policy = info.get("maxmemory_policy", SAFE_POLICY)
    if policy != SAFE_POLICY:
        return (f"Redis may evict acknowledged receipts: its maxmemory-policy is {policy}; "
                f"set it to {SAFE_POLICY}")
    return None
