"""Whether Redis can hold what dlrq acknowledges: it takes a write, and it never evicts.

A server that evicts keys under memory pressure (a maxmemory-policy other than noeviction,
with a memory limit) may drop queued batches that were acknowledged: Vonage would never send
them again. The ingest (/readyz, and the webhook itself), the workers (which wait until it
holds) and `dlrq stats` ask the same question.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.exceptions import ResponseError

from . import keys
from .calls import Steps

SAFE_POLICY = "noeviction"
READY_TTL = 60
REFUSES_WRITES = "refuses writes"
EVICTS = "evicts"
UNREACHABLE = "unreachable"
TOO_FEW_REPLICAS = "too few replicas"


@dataclass(frozen=True)
class Problem:
    kind: str  # REFUSES_WRITES, EVICTS or UNREACHABLE
    detail: str

    def __str__(self) -> str:
        return self.detail


def problem(replicas: int = 0) -> Steps[Problem | None]:
    """Why Redis cannot be trusted with receipts now, or None. (Unreachable: the driver raises.)

    `replicas`: how many replicas an acknowledgement waits for (DLRQ_ACK_REPLICAS)."""
    try:
        yield ("SET", keys.READY, str(time.time()), "EX", READY_TTL)
    except ResponseError as exc:
        return Problem(REFUSES_WRITES, f"Redis refuses writes: {exc}")
    info = yield ("INFO", "memory")
    policy = info.get("maxmemory_policy", SAFE_POLICY)
    if policy != SAFE_POLICY and int(info.get("maxmemory", 0)):
        return Problem(EVICTS, f"Redis may evict acknowledged receipts: its maxmemory-policy is {policy}; "
                               f"set it to {SAFE_POLICY}")
    if replicas:
        connected = int((yield ("INFO", "replication")).get("connected_slaves", 0))
        if connected < replicas:
            return too_few_replicas(f"{connected} replicas connected")
    return None


def too_few_replicas(why: object) -> Problem:
    return Problem(TOO_FEW_REPLICAS, f"acknowledgements wait for replicas (DLRQ_ACK_REPLICAS) and {why}")


def unreachable(where: str, exc: BaseException) -> Problem:
    return Problem(UNREACHABLE, f"Redis unreachable at {where}: {exc or type(exc).__name__}")
