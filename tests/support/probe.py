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
    """A handler call that takes a while (8 s unless the event says `seconds`): a worker busy with it."""
    import sys
    import time

    print("lingering", file=sys.stderr, flush=True)
    time.sleep(event.get("seconds", 8))


# The file record_to_file appends to: a side effect outside Redis, which a failover cannot take back.
CALLS_FILE = "DLRQ_TEST_PROBE_FILE"


def record_to_file(event: dict) -> None:
    import fcntl
    import os

    with open(os.environ[CALLS_FILE], "a") as calls:
        fcntl.flock(calls, fcntl.LOCK_EX)
        calls.write(json.dumps(event) + "\n")
