"""After a batch: raise the events its receipts call for (failed messages, failing networks)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from dlrq.core.calls import run
from dlrq.core.events import Event, failure_rate, message_events
from dlrq.core.settings import Settings
from dlrq.core.store import find_messages

from .dispatch import Dispatcher

log = logging.getLogger("dlrq.worker")


@dataclass(frozen=True)
class Window:
    """One network's final receipts over the failure-rate window."""

    network: str
    total: int
    failed: int


def react(connection: redis.Redis, settings: Settings, failed_parts: dict[str, str | None], windows: list[Window],
          now: float) -> int:
    """Return how many new events were raised. `failed_parts`: each part whose receipt failed, with the
    message it belongs to if registered (read with the batch). Their messages are read, and every event
    raised, in two or three round trips for the batch."""
    raised = message_reactions(connection, settings, failed_parts)
    for window in windows:
        event = failure_rate(window.network, window.total, window.failed, settings.failure_rate_min_volume,
                             settings.failure_rate_threshold, settings.failure_rate_window, now)
        if event is not None:
            raised.append((event, None))
    if not raised:
        return 0
    return dispatcher_for(connection, settings).raise_events(raised)


_dispatchers: dict[tuple[int, int], Dispatcher] = {}


def dispatcher_for(connection: redis.Redis, settings: Settings) -> Dispatcher:
    """One per worker connection: a dispatcher asks the server's version once."""
    key = (id(connection), id(settings))
    if key not in _dispatchers:
        _dispatchers[key] = Dispatcher(connection, settings)
    return _dispatchers[key]


def message_reactions(connection: redis.Redis, settings: Settings, parts: dict[str, str | None]
                      ) -> list[tuple[Event, str | None]]:
    """The events the messages of these parts (or messages) call for, each message once (two of its
    parts may have failed), with the registered message each is recorded in. `parts`: the message
    each belongs to, None for none."""
    found = run(connection, find_messages(list(parts), owners=parts))
    views = {view["id"]: view for view in found.values() if view is not None}
    raised = []
    for view in views.values():
        try:
            events = message_events(view, settings.retry_codes, settings.retry_max_attempts, settings.backoff)
        except Exception:  # one message's state must not keep the others' events from being raised
            log.exception("the events of message %s could not be worked out; the others' are raised", view["id"])
            continue
        raised += [(event, view["id"] if view["registered"] else None) for event in events]
    return raised
