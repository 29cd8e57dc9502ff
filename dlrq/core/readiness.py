"""Whether Redis can hold what dlrq acknowledges: it takes a write, it never evicts, it has room.

A server that evicts keys under memory pressure (a maxmemory-policy other than noeviction,
with a memory limit) may drop queued batches that were acknowledged: Vonage would never send
them again. The ingest (/readyz, and the webhook itself), the workers (which wait until it
holds) and `dlrq stats` ask the same question. The ingest also stops acknowledging at a memory
high-water mark below maxmemory: what it acknowledged must still be applied, and the workers need
room to do it (their heartbeats, the parts they write, the jobs they finish).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.exceptions import OutOfMemoryError, ResponseError

from . import keys
from .calls import Steps

SAFE_POLICY = "noeviction"
READY_TTL = 60
REFUSES_WRITES = "refuses writes"
EVICTS = "evicts"
UNREACHABLE = "unreachable"
TOO_FEW_REPLICAS = "too few replicas"
MEMORY_HIGH = "memory high"
# Once over the high-water mark, receipts are taken again only below it by this share of maxmemory:
# without the margin, each byte the workers free would be taken at once, and the state would flap.
LOW_WATER_MARGIN = 0.05
# The workers shed the oldest of the record (workers/shed.py) from this far under the high-water
# mark: while there is record to shed, memory never reaches the mark, and receipts are acknowledged.
SHED_MARGIN = 0.05


@dataclass(frozen=True)
class Problem:
    kind: str  # REFUSES_WRITES, EVICTS, UNREACHABLE, TOO_FEW_REPLICAS or MEMORY_HIGH
    detail: str

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True)
class Memory:
    """Redis' memory as INFO gives it: used, and the limit (0: none)."""

    used: int
    max: int

    @property
    def share(self) -> float | None:
        return self.used / self.max if self.max else None


def memory_of(info: dict) -> Memory:
    return Memory(int(info.get("used_memory", 0)), int(info.get("maxmemory", 0)))


def problem(replicas: int = 0, seen: dict | None = None) -> Steps[Problem | None]:
    """Why Redis cannot be trusted with receipts now, or None. (Unreachable: the driver raises.)

    `replicas`: how many replicas an acknowledgement waits for (DLRQ_ACK_REPLICAS). `seen`, if
    given, receives the INFO memory read (for the headroom)."""
    try:
        yield ("SET", keys.READY, str(time.time()), "EX", READY_TTL)
    except ResponseError as exc:
        return refuses(exc)
    info = yield ("INFO", "memory")
    if seen is not None:
        seen.update(info)
    policy = info.get("maxmemory_policy", SAFE_POLICY)
    if policy != SAFE_POLICY and int(info.get("maxmemory", 0)):
        return Problem(EVICTS, f"Redis may evict acknowledged receipts: its maxmemory-policy is {policy}; "
                               f"set it to {SAFE_POLICY}")
    if replicas:
        connected = int((yield ("INFO", "replication")).get("connected_slaves", 0))
        if connected < replicas:
            return too_few_replicas(f"{connected} replicas connected")
    return None


def shed_mark(high_water: float) -> float:
    return high_water - SHED_MARGIN if high_water else 0.0


def headroom(memory: Memory, high_water: float) -> dict[str, object]:
    """What /readyz and `dlrq stats` say of Redis' memory: used, the limit, and (with one) the share
    used and the marks at which the record is shed and receipts are refused."""
    shown: dict[str, object] = {"memory_used_bytes": memory.used, "memory_max_bytes": memory.max}
    if memory.share is not None:
        shown["memory_used_share"] = round(memory.share, 4)
        if high_water:
            shown["memory_shed_from"] = round(shed_mark(high_water), 4)
            shown["memory_high_water"] = high_water
    return shown


def memory_high(memory: Memory, high_water: float, was_high: bool) -> Problem | None:
    """Redis too full to take more receipts and leave the workers room to apply what it holds:
    over `high_water` of maxmemory, or, once over it, not yet back below it by LOW_WATER_MARGIN."""
    share = memory.share
    if share is None or not high_water:
        return None
    mark = high_water - LOW_WATER_MARGIN if was_high else high_water
    if share < mark:
        return None
    return Problem(MEMORY_HIGH, f"Redis memory at {share:.0%} of maxmemory ({memory.used:,} of {memory.max:,} bytes), "
                                f"over the high-water mark (DLRQ_MEMORY_HIGH_WATER={high_water:g}): receipts are "
                                f"refused until the workers have applied enough of what is queued to bring it "
                                f"under {high_water - LOW_WATER_MARGIN:.0%}")


def refuses(exc: BaseException) -> Problem:
    """A refused write: for memory (OOM), the memory problem the high-water mark names, so that a server
    at its edge, refusing one write in two, is one problem and not two taking turns."""
    if is_out_of_memory(exc):
        return Problem(MEMORY_HIGH, f"Redis refuses writes, out of memory: {exc}")
    return Problem(REFUSES_WRITES, f"Redis refuses writes: {exc}")


def is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, OutOfMemoryError) or text.startswith("OOM") or "-OOM" in text or "> 'maxmemory'" in text


def too_few_replicas(why: object) -> Problem:
    return Problem(TOO_FEW_REPLICAS, f"acknowledgements wait for replicas (DLRQ_ACK_REPLICAS) and {why}")


def unreachable(where: str, exc: BaseException) -> Problem:
    return Problem(UNREACHABLE, f"Redis unreachable at {where}: {exc or type(exc).__name__}")
