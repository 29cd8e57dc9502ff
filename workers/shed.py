"""Memory pressure: what can be spared goes before Redis refuses the workers' writes.

Over the high-water mark (DLRQ_MEMORY_HIGH_WATER of maxmemory) the ingest stops acknowledging, so that
what it acknowledged can still be applied. The record of accepted receipts (`dlrq:record`) is a copy,
kept for export and replay, that nothing else needs: from a little under the mark
(readiness.shed_mark) its oldest entries are shed, each shedding logged and counted, so that receipts
keep being acknowledged for as long as there is record to shed. Nothing the dedupe window, an
unapplied batch or a pending deadline needs is ever shed.
"""

from __future__ import annotations

import logging
import math

import redis

from dlrq.core import keys, readiness
from dlrq.core.receipt import iso_from_epoch

log = logging.getLogger("dlrq.worker")
# Shed down to this far under the mark, so that one shedding makes room for a while.
SLACK = 0.01


def shed_record(connection: redis.Redis, high_water: float) -> int:
    """Trim the record's oldest entries while memory is over the shedding mark under `high_water`; return
    how many were shed."""
    if not high_water:
        return 0
    memory = readiness.memory_of(connection.info("memory"))
    share, mark = memory.share, readiness.shed_mark(high_water)
    if share is None or share < mark:
        return 0
    length = connection.xlen(keys.RECORD)
    if not length:
        return 0
    target = memory.max * (mark - SLACK)
    per_entry = (connection.memory_usage(keys.RECORD, samples=5) or 0) / length
    shed = min(length, math.ceil((memory.used - target) / per_entry)) if per_entry else length
    connection.xtrim(keys.RECORD, maxlen=length - shed, approximate=False)
    try:
        connection.hincrby(keys.COUNTERS, keys.COUNT_RECORD_SHED, shed)
    except redis.ResponseError:
        pass  # the count is the last thing that matters when memory is this short
    kept = connection.xrange(keys.RECORD, count=1)
    since = iso_from_epoch(int(kept[0][0].split(b"-")[0]) / 1000) if kept else "now"
    log.warning("Redis memory at %.0f%% of maxmemory: shed the record's %d oldest batches (it now begins at %s) "
                "so that receipts keep being acknowledged; export it more often (dlrq export), or give Redis "
                "more memory",
                share * 100, shed, since)
    return shed
