"""The contract's status rules, as pure functions over a part's receipt history.

State is never stored already decided: the workers keep each distinct receipt
once, and the status is derived from them here, so arrival order, resends and
retries cannot disagree with the rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

RANK = {
    "accepted": 1,
    "buffered": 2,
    "unknown": 3,
    "delivered": 4,
    "expired": 4,
    "failed": 4,
    "rejected": 4,
}
FINAL = frozenset({"delivered", "expired", "failed", "rejected", "unknown"})
FAILED = frozenset({"expired", "failed", "rejected"})

Entry = Mapping[str, str]


def _event_order(indexed: tuple[int, Entry]) -> tuple[str, str, int]:
    arrival, entry = indexed
    return (entry.get("message-timestamp", ""), entry.get("scts", ""), arrival)


def deciding_receipt(history: Sequence[Entry]) -> Entry | None:
    """The highest-ranked receipt; among equals the latest event, then the latest arrival.

    Receipts with status words outside the contract rank nowhere: they stay in
    the history but never decide.
    """
    ranked = [(i, e) for i, e in enumerate(history) if e.get("status") in RANK]
    if not ranked:
        return None
    return max(ranked, key=lambda ie: (RANK[ie[1]["status"]], _event_order(ie)))[1]


def part_status(history: Sequence[Entry]) -> str | None:
    """None while no receipt with a known status word has arrived."""
    entry = deciding_receipt(history)
    return entry["status"] if entry else None


def chronological(history: Sequence[Entry]) -> list[Entry]:
    """Oldest event first: by Vonage's timestamp, then the carrier's, then arrival."""
    return [e for _, e in sorted(enumerate(history), key=_event_order)]


def message_status(part_statuses: Iterable[str | None], parts_expected: int) -> str:
    statuses = list(part_statuses)
    if any(s in FAILED for s in statuses):
        return "failed"
    complete = len(statuses) >= parts_expected
    if complete and all(s == "delivered" for s in statuses):
        return "delivered"
    if complete and all(s in FINAL for s in statuses):
        return "unknown"
    return "pending"
