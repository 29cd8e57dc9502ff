"""After a batch: raise the events its receipts call for (failed messages, failing networks)."""

from __future__ import annotations

import redis

from ingest import keys
from ingest.messages import find_message_sync
from ingest.settings import Settings

from .dispatch import Dispatcher
from .events import Event, failure_rate, message_events


def react(connection: redis.Redis, settings: Settings, failed_parts: list[str], networks: list[str], now: float) -> int:
    """Return how many new events were raised."""
    raised: list[tuple[Event, str | None]] = []
    for part_id in failed_parts:
        raised += message_reaction(connection, settings, part_id)
    raised += [(event, None) for event in network_reactions(connection, settings, networks, now)]
    if not raised:
        return 0
    dispatcher = Dispatcher(connection, settings)
    return sum(dispatcher.raise_event(event, message_id) for event, message_id in raised)


def message_reaction(connection: redis.Redis, settings: Settings, message_id: str) -> list[tuple[Event, str | None]]:
    view = find_message_sync(connection, message_id)
    if view is None:
        return []
    events = message_events(view, settings.retry_codes, settings.retry_max_attempts, settings.backoff)
    return [(event, view["id"] if view["registered"] else None) for event in events]


def network_reactions(connection: redis.Redis, settings: Settings, networks: list[str], now: float) -> list[Event]:
    """Sum each network's counters over the sliding window (whole buckets)."""
    if not networks:
        return []
    last = int(now // keys.NETWORK_BUCKET)
    buckets = range(last - settings.failure_rate_window // keys.NETWORK_BUCKET + 1, last + 1)
    with connection.pipeline(transaction=False) as pipe:
        for network in networks:
            for bucket in buckets:
                pipe.hmget(keys.network_counts(network, bucket), "total", "failed")
        counts = pipe.execute()
    events = []
    for i, network in enumerate(networks):
        window = counts[i * len(buckets):(i + 1) * len(buckets)]
        total = sum(int(t or 0) for t, _ in window)
        failed = sum(int(f or 0) for _, f in window)
        event = failure_rate(network, total, failed, settings.failure_rate_min_volume,
                             settings.failure_rate_threshold, settings.failure_rate_window, now)
        if event is not None:
            events.append(event)
    return events
