"""After a batch: raise the events its receipts call for (failed messages, failing networks)."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from dlrq.core.calls import run
from dlrq.core.events import Event, failure_rate, message_events
from dlrq.core.settings import Settings
from dlrq.core.store import find_message

from .dispatch import Dispatcher


@dataclass(frozen=True)
class Window:
    """One network's final receipts over the failure-rate window."""

    network: str
    total: int
    failed: int


def react(
    connection: redis.Redis, settings: Settings, failed_parts: list[str], windows: list[Window], now: float
) -> int:
    """Return how many new events were raised."""
    raised: list[tuple[Event, str | None]] = []
    for part_id in failed_parts:
        raised += message_reaction(connection, settings, part_id)
    for window in windows:
        event = failure_rate(window.network, window.total, window.failed, settings.failure_rate_min_volume,
                             settings.failure_rate_threshold, settings.failure_rate_window, now)
        if event is not None:
            raised.append((event, None))
    if not raised:
        return 0
    dispatcher = dispatcher_for(connection, settings)
    return sum(dispatcher.raise_event(event, message_id) for event, message_id in raised)


_dispatchers: dict[tuple[int, int], Dispatcher] = {}


def dispatcher_for(connection: redis.Redis, settings: Settings) -> Dispatcher:
    """One per worker connection: a dispatcher asks the server's version once."""
    key = (id(connection), id(settings))
    if key not in _dispatchers:
        _dispatchers[key] = Dispatcher(connection, settings)
    return _dispatchers[key]


def message_reaction(connection: redis.Redis, settings: Settings, message_id: str) -> list[tuple[Event, str | None]]:
    view = run(connection, find_message(message_id))
    if view is None:
        return []
    events = message_events(view, settings.retry_codes, settings.retry_max_attempts, settings.backoff)
    return [(event, view["id"] if view["registered"] else None) for event in events]
