"""Which events a message's state or a network's failures raise: the contract's Handlers rules.

Pure functions. An event's id is derived from what caused it, so finding the same
cause again (a resend, a batch run twice, two workers) names the same event, and
the dispatcher raises each id once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .receipt import SMS
from .status import FAILED

RETRY = "retry"
PERMANENT_FAILURE = "permanent_failure"
RETRIES_EXHAUSTED = "retries_exhausted"
RECEIPT_MISSING = "receipt_missing"
FAILURE_RATE = "failure_rate"
# The events of a message's failed attempt, which a later attempt or a late delivery makes moot.
OF_AN_ATTEMPT = (RETRY, PERMANENT_FAILURE, RETRIES_EXHAUSTED)
ALERTS = frozenset({PERMANENT_FAILURE, RETRIES_EXHAUSTED, RECEIPT_MISSING, FAILURE_RATE})


@dataclass(frozen=True)
class Event:
    id: str
    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)
    # Seconds before the handlers are called: the retry backoff.
    delay: int = 0

    @property
    def is_alert(self) -> bool:
        return self.kind in ALERTS

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, **self.data}


def failing_part(view: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The part that failed the message (the first by index)."""
    return next((p for p in view["parts"] if p["status"] in FAILED), None)


def message_events(
    view: Mapping[str, Any], temporary_codes: Collection[str], max_attempts: int, backoff: Callable[[int], int]
) -> list[Event]:
    """retry while a temporary failure has attempts left, then retries_exhausted; permanent_failure otherwise.

    A part refused at send time has no err-code: nothing says waiting would help, so it is permanent.
    """
    if view["status"] != "failed":
        return []
    part = failing_part(view)
    assert part is not None, "a failed message has a failed part"
    message_id, attempt, err_code = view["id"], view["attempts"], part.get("err_code")
    data = {
        "message": message_id,
        "attempt": attempt,
        "part": part["message_id"],
        "status": part["status"],
        "err_code": err_code,
        "network_code": part.get("network_code"),
        "client_ref": view.get("client_ref"),
        "to": view.get("to"),
        # "messages": sent through the Messages API, which the `vonage` retry handler does not resend.
        "api": part.get("api", SMS),
    }
    if err_code in temporary_codes:
        if attempt < max_attempts:
            return [Event(f"{RETRY}:{message_id}:{attempt}", RETRY, data, delay=backoff(attempt))]
        return [Event(f"{RETRIES_EXHAUSTED}:{message_id}", RETRIES_EXHAUSTED, data)]
    return [Event(f"{PERMANENT_FAILURE}:{message_id}:{attempt}", PERMANENT_FAILURE, data)]


def superseded(kind: str, attempt: int | None, view: Mapping[str, Any] | None) -> bool:
    """A message's retry or alert made moot since it was raised: a later attempt was registered, or
    the message was delivered after all (a late receipt). Decided by the event's first handler call:
    once one handler was called, the others are too (the `vonage` retry registers the next attempt)."""
    if kind not in OF_AN_ATTEMPT or view is None:
        return False
    return view["status"] == "delivered" or (attempt is not None and view["attempts"] > attempt)


def receipt_missing(message_id: str, attempt: int, part_id: str, deadline: str) -> Event:
    data = {"message": message_id, "attempt": attempt, "part": part_id, "deadline": deadline}
    return Event(f"{RECEIPT_MISSING}:{part_id}", RECEIPT_MISSING, data)


def failure_rate(
    network: str, total: int, failed: int, min_volume: int, threshold: float, window: int, now: float
) -> Event | None:
    """Too many of a network's final receipts failed in the window. The dispatcher's cooldown
    makes one episode raise one event."""
    if total < min_volume or failed / total < threshold:
        return None
    data = {"network_code": network, "total": total, "failed": failed, "share": round(failed / total, 4),
            "window": window}
    return Event(f"{FAILURE_RATE}:{network}:{int(now)}", FAILURE_RATE, data)
