"""A handler named by dotted path in the tests: it records each call in Redis."""

from __future__ import annotations

import json

from rq import get_current_job

CALLS = "dlrq-test:probe-calls"


def record(event: dict) -> None:
    get_current_job().connection.rpush(CALLS, json.dumps(event))


def explode(event: dict) -> None:
    raise RuntimeError(f"handler down for {event['id']}")


def linger(event: dict) -> None:
    """A handler call that takes a while: a worker busy with it when told to stop."""
    import sys
    import time

    print("lingering", file=sys.stderr, flush=True)
    time.sleep(8)
