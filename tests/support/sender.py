"""Vonage's side, for tests on threads: every receipt is sent until it is acknowledged (2xx)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

PATH = "/webhooks/delivery-receipt"


class Sender:
    def __init__(self, base: str, connections: int = 8, pause: float = 0.05) -> None:
        self.base = base
        self.connections = connections
        self.pause = pause
        self.acknowledged: list[dict[str, str]] = []
        self.answers: Counter[str] = Counter()
        self.lock = threading.Lock()
        self._local = threading.local()
        self._clients: list[httpx.Client] = []

    def send_all(self, receipts: list[dict[str, str]], give_up_after: float = 120) -> None:
        """Returns once every receipt was acknowledged; fails if one was refused as invalid or time ran out."""
        deadline = time.monotonic() + give_up_after
        try:
            with ThreadPoolExecutor(self.connections) as pool:
                list(pool.map(lambda params: self._deliver(params, deadline), receipts))
        finally:
            for client in self._clients:
                client.close()

    def _deliver(self, params: dict[str, str], deadline: float) -> None:
        if not hasattr(self._local, "http"):
            self._local.http = httpx.Client(base_url=self.base, timeout=5)
            with self.lock:
                self._clients.append(self._local.http)
        while True:
            assert time.monotonic() < deadline, f"{params['messageId']} never acknowledged"
            try:
                status = str(self._local.http.post(PATH, json=params).status_code)
            except httpx.TransportError:
                status = "refused"
            with self.lock:
                self.answers[status] += 1
            if status in ("200", "204"):
                with self.lock:
                    self.acknowledged.append(params)
                return
            assert not status.startswith("4"), f"{params['messageId']} refused with {status}"
            time.sleep(self.pause)
