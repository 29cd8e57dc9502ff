"""Delivery analytics: the contract's figures, computed from hourly buckets of counters.

The workers (apply_receipts.lua) and the registrations (register.lua) count into one hash per
dimension and hour: fields `<value>|<metric>`. A part counts once, in the hour of its first final
receipt, under the deciding receipt's network, country, client-ref and err-code (moved, in that
hour, when a later receipt decides); registered parts count as submitted in their registration's
hour, with the time to their first final receipt. This module turns a span of such buckets into
the rows `/analytics` and `dlrq report` show. Pure functions only.
"""

from __future__ import annotations

import bisect
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from . import keys, networks, times
from .country import UNKNOWN_COUNTRY, country
from .registration import PartSend, Send
from .settings import Settings
from .status import FINAL as FINAL_STATUSES

DIMENSIONS = ("network", "country", "client_ref", "err_code")
OUTCOMES = ("delivered", "expired", "failed", "rejected", "unknown")
# Seconds from registration to the first final receipt: the histogram's upper bounds.
LATENCY_BOUNDS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
PERCENTILES = (50, 90, 99)
# Prices are counted in units of 1e-8 (Vonage gives eight decimals), so that sums are exact integers.
PRICE_UNIT = Decimal("0.00000001")
NONE = "(none)"
OTHER = "(other)"
HOUR_FORMAT = "%Y-%m-%dT%H"
# What analytics keep of a part's registration (analytics.lua reads it by position): its hour and time,
# network, country, client-ref; dlrq 0.1-0.2 kept it by these short names (records.lua reads both).
REGISTERED = ("h", "t", "n", "c", "r")
# Metric names within a bucket's fields.
FINAL = "final:"
ERR = "err:"
COST = "cost"
SUBMITTED = "sub"
RESOLVED = "res"
LATENCY = "lat:"
SEPARATOR = "|"


def price_units(price: str | None) -> int:
    try:
        return int((Decimal(price or "0") / PRICE_UNIT).to_integral_value()) if price else 0
    except InvalidOperation:
        return 0


def hour_of(iso: str) -> str:
    """The bucket of an ISO 8601 UTC time ("2026-11-25T17:04:05.123Z" -> "2026-11-25T17")."""
    return iso[:13]


def latency_bucket(seconds: float) -> int:
    """Index of the histogram bucket (len(LATENCY_BOUNDS) for longer than the last bound)."""
    return bisect.bisect_left(LATENCY_BOUNDS, max(0.0, seconds))


@lru_cache(maxsize=4)
def lua_config(settings: Settings) -> str:
    """Every name analytics.lua uses, for the scripts that count ('' when analytics are off)."""
    if not settings.analytics_retention:
        return ""
    caps = {"client_ref": [keys.ANALYTICS_REFS, settings.analytics_max_refs],
            "network": [keys.ANALYTICS_NETWORKS, settings.analytics_max_networks],
            "err_code": [keys.ANALYTICS_ERR_CODES, settings.analytics_max_err_codes]}
    return json.dumps({
        "prefixes": {d: keys.analytics_prefix(d) for d in DIMENSIONS}, "caps": caps,
        "labels": [keys.ANALYTICS_LABELS, settings.analytics_max_networks],
        "ttl": settings.analytics_retention + 3600, "sep": SEPARATOR, "none": NONE, "other": OTHER,
        "unknown": UNKNOWN_COUNTRY, "final": FINAL, "err": ERR, "cost": COST, "sub": SUBMITTED, "res": RESOLVED,
        "lat": LATENCY, "bounds": LATENCY_BOUNDS, "outcomes": keys.OUTCOMES, "latency": keys.TIME_TO_RECEIPT,
        "outcomes_final": sorted(FINAL_STATUSES),
    })


def registered(part: PartSend, send: Send, now: float) -> list[Any]:
    """What analytics keep of a part's registration, by position (REGISTERED)."""
    return [time.strftime(HOUR_FORMAT, time.gmtime(now)), now, part.network or "", country(part.to or send.to),
            send.client_ref or ""]


# --- reading -----------------------------------------------------------------------------------

# Most rows an answer holds; the rest are summed into one "(other)" row (the total counts them all).
MAX_ROWS = 1000
# Hours read from Redis at a time: what one read holds in memory, and how long one takes.
HOURS_A_READ = 24


def parse_time(text: str, now: datetime) -> datetime:
    """A time as times.moment reads it, to the start of its hour (analytics are kept by the hour)."""
    return times.moment(text, now).replace(minute=0, second=0, microsecond=0)


def span(since: str | None, until: str | None, now: datetime, retention: int | None = None
         ) -> tuple[datetime, datetime]:
    """[since, until) in whole hours; by default the last 24 h (until is the end of the current hour).
    With `retention` (seconds analytics are kept), a span reaching further back starts where they do,
    and one reaching into the future ends with the current hour: nothing is counted outside."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    end = parse_time(until, now) if until else hour + timedelta(hours=1)
    start = parse_time(since, now) if since else end - timedelta(hours=24)
    if retention is not None:
        start, end = max(start, hour - timedelta(seconds=retention)), min(end, hour + timedelta(hours=1))
    if start >= end:
        raise ValueError("since must be before until (and within the analytics' retention)")
    return start, end


def hours(start: datetime, end: datetime) -> list[str]:
    count = int((end - start).total_seconds() // 3600)
    return [(start + timedelta(hours=i)).strftime(HOUR_FORMAT) for i in range(count)]


@dataclass
class Tally:
    """One row's counters, summed over the span."""

    finals: dict[str, int]
    errors: dict[str, int]
    cost: int = 0
    submitted: int = 0
    resolved: int = 0
    latency: list[int] | None = None

    @classmethod
    def empty(cls) -> Tally:
        return cls({o: 0 for o in OUTCOMES}, {}, latency=[0] * (len(LATENCY_BOUNDS) + 1))

    def add(self, metric: str, n: int) -> None:
        if metric.startswith(FINAL):
            outcome = metric[len(FINAL):]
            if outcome in self.finals:
                self.finals[outcome] += n
        elif metric.startswith(ERR):
            code = metric[len(ERR):]
            self.errors[code] = self.errors.get(code, 0) + n
        elif metric == COST:
            self.cost += n
        elif metric == SUBMITTED:
            self.submitted += n
        elif metric == RESOLVED:
            self.resolved += n
        elif metric.startswith(LATENCY) and self.latency is not None:
            index = int(metric[len(LATENCY):])
            if 0 <= index < len(self.latency):
                self.latency[index] += n

    def merge(self, other: Tally) -> None:
        for outcome, n in other.finals.items():
            self.finals[outcome] += n
        for code, n in other.errors.items():
            self.errors[code] = self.errors.get(code, 0) + n
        self.cost += other.cost
        self.submitted += other.submitted
        self.resolved += other.resolved
        assert self.latency is not None and other.latency is not None
        self.latency = [a + b for a, b in zip(self.latency, other.latency)]

    def row(self, key: str | None = None) -> dict[str, Any]:
        final = sum(self.finals.values())
        row: dict[str, Any] = {} if key is None else {"key": key}
        row.update({"final": final, **self.finals})
        row["delivery_rate"] = round(self.finals["delivered"] / final, 4) if final else None
        row["cost"] = f"{Decimal(self.cost) * PRICE_UNIT:.8f}"  # never str(): Decimal writes zero as 0E-8
        row["err_codes"] = {code: n for code, n in sorted(self.errors.items(), key=_code_order) if n and code != "0"}
        row["submitted"] = self.submitted
        row["dlr_ratio"] = round(self.resolved / self.submitted, 4) if self.submitted else None
        row["latency_s"] = percentiles(self.latency or [])
        return row


def _code_order(item: tuple[str, int]) -> tuple[int, str]:
    code = item[0]
    return (int(code), code) if code.isdigit() else (1 << 30, code)


def tally(buckets: Iterable[Mapping[bytes | str, bytes | str | int]], rows: dict[str, Tally] | None = None,
          max_rows: int = MAX_ROWS) -> dict[str, Tally]:
    """The rows of one dimension over a span (each bucket is one hour's hash), added to `rows` if given.
    Beyond `max_rows` rows, new keys are counted as "(other)", so that memory stays bounded."""
    rows = {} if rows is None else rows
    for fields in buckets:
        for field, value in fields.items():
            name = field.decode() if isinstance(field, bytes) else field
            key, _, metric = name.rpartition(SEPARATOR)
            row = rows.get(key)
            if row is None:
                key = key if len(rows) < max_rows else OTHER
                row = rows.get(key) or rows.setdefault(key, Tally.empty())
            row.add(metric, int(value))
    return rows


def report(by: str, start: datetime, end: datetime, rows: Mapping[str, Tally], now: datetime | None = None
           ) -> dict[str, Any]:
    """The contract's /analytics answer. Counts are kept by the hour, so [start, end) is whole hours;
    `until` says `now` when the span ends in the current hour: nothing after it is covered."""
    total = Tally.empty()
    for row in rows.values():
        total.merge(row)
    ordered = sorted(rows.items(), key=lambda item: (-sum(item[1].finals.values()), -item[1].submitted, item[0]))
    return {
        "by": by,
        "since": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "until": (min(end, now) if now else end).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rows": [_named(by, tally_.row(key)) for key, tally_ in ordered],
        "total": total.row(),
    }


def _named(by: str, row: dict[str, Any]) -> dict[str, Any]:
    """A network's row says who runs it (operator, country), from its MCC-MNC."""
    if by == "network":
        row["operator"], row["country"] = networks.network(row["key"])
    return row


def percentiles(counts: list[int]) -> dict[str, float] | None:
    """p50, p90, p99 from the histogram, interpolated linearly within the bucket that holds each."""
    total = sum(counts)
    if not total:
        return None
    result = {}
    for p in PERCENTILES:
        rank = total * p / 100
        seen = 0
        for index, n in enumerate(counts):
            if n and seen + n >= rank:
                low = LATENCY_BOUNDS[index - 1] if index else 0
                high = LATENCY_BOUNDS[index] if index < len(LATENCY_BOUNDS) else LATENCY_BOUNDS[-1]
                result[f"p{p}"] = round(low + (high - low) * (rank - seen) / n, 1)
                break
            seen += n
    return result
