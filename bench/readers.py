"""The webhook while readers are busy: `dlrq api` beside the ingest, a client looping its heaviest
console page and a year-long analytics query for the whole of the load."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import redis

from dlrq.core.receipt import Receipt, utc_now_iso
from dlrq.core.settings import Settings
from workers.batch import apply

from .harness import LOAD_CORE, free_port, process, python

TOKEN = "bench-token"
NETWORKS = 20_000


def heavy_pages(client: redis.Redis, url: str) -> None:
    """The heaviest networks page there can be: this hour's outcomes over 20,000 network codes (what an
    unsigned sender could post; the analytics' caps keep the first 1,000 by name)."""
    settings = Settings(redis_url=url)
    for first in range(0, NETWORKS, 1000):
        apply(client, [Receipt({"messageId": f"HEAVY{n:06d}", "status": "delivered", "err-code": "0",
                                "network-code": str(100_000 + n), "msisdn": "447700900000", "price": "0.03330000"},
                               utc_now_iso()) for n in range(first, first + 1000)], settings)


@contextmanager
def busy_readers(env: dict[str, str]) -> Iterator[dict[str, int]]:
    """`dlrq api` (on the load core, beside wrk and the server) and a reader looping on it; yields the
    count of reads done, filled in as they are."""
    port = free_port()
    with process([python(), "-m", "dlrq", "api"], {**env, "DLRQ_API_PORT": str(port)}, LOAD_CORE, port):
        done = {"reads": 0}
        stop = threading.Event()
        reader = threading.Thread(target=_read, args=(f"http://127.0.0.1:{port}", stop, done), daemon=True)
        reader.start()
        try:
            yield done
        finally:
            stop.set()
            reader.join(30)


def _read(base: str, stop: threading.Event, done: dict[str, int]) -> None:
    with httpx.Client(base_url=base, timeout=120) as http:
        login = http.get("/console/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
        assert csrf, "the console's sign-in form"
        http.post("/console/login", data={"csrf": csrf.group(1), "token": TOKEN})
        while not stop.is_set():
            http.get("/console/networks")
            http.get("/analytics", params={"since": "-8760h"}, headers={"Authorization": f"Bearer {TOKEN}"})
            done["reads"] += 2
