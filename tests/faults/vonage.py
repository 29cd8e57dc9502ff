"""Vonage's side of a fault run: every receipt delivered until it is acknowledged."""

from __future__ import annotations

import asyncio
import json
import random
import time

import aiohttp

from ingest.signature import sign
from tests.support.messages import token
from tests.support.oracle import dedupe_key

from .cluster import SIGNATURE_SECRET
from .report import Report

PATH = "/webhooks/delivery-receipt"
MESSAGE_PATH = "/webhooks/message-status"
CONNECTIONS = 64  # Vonage's concurrent deliveries to one endpoint


class Vonage:
    """Delivers each receipt until it is acknowledged, backing off from 0.25 s to 2 s between tries."""

    def __init__(self, base: str, report: Report, seed: int) -> None:
        self.base = base
        self.report = report
        self.rng = random.Random(seed)
        self.acknowledged: set[tuple[str, ...]] = set()
        self.give_up_at = float("inf")
        # Requests in flight: as many as the client has connections.
        self.slots = asyncio.Semaphore(CONNECTIONS)

    async def deliver(self, client: aiohttp.ClientSession, params: dict[str, str], backoff: float = 0.25,
                      slots: asyncio.Semaphore | None = None, longest: float = 2.0) -> bool:
        """True once acknowledged; False if refused as invalid (a bug the oracle reports) or the run gave up.
        Each try waits twice as long as the one before, up to `longest`."""
        while time.monotonic() < self.give_up_at:
            self.report.http_attempts += 1
            async with slots or self.slots:
                answer = await self._post(client, params)
            self.report.answers[answer] += 1
            if answer in ("200", "204"):
                self.acknowledged.add(dedupe_key(params))
                return True
            if answer.startswith("4"):
                return False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, longest)
        return False

    async def _post(self, client: aiohttp.ClientSession, params: dict) -> str:
        """As Vonage does, signed anew for each try: a receipt by GET with a query string, or POST as
        JSON or as a form; a Messages API status as JSON with its JWT."""
        how = "status" if "message_uuid" in params else self.rng.choices(["json", "get", "form"], [60, 25, 15])[0]
        if how == "status":
            body = json.dumps(params).encode()
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token(body, SIGNATURE_SECRET)}"}
        else:
            params = {**params, "timestamp": str(int(time.time())), "nonce": f"{self.rng.getrandbits(64):x}"}
            params["sig"] = sign(params, SIGNATURE_SECRET, "md5hash")
        try:
            if how == "status":
                request = client.post(MESSAGE_PATH, data=body, headers=headers)
            elif how == "json":
                request = client.post(PATH, json=params)
            elif how == "get":
                request = client.get(PATH, params=params)
            else:
                request = client.post(PATH, data=params)
            async with request as response:
                await response.read()
                return str(response.status)
        except aiohttp.ClientConnectorError:
            return "refused"
        except TimeoutError:
            return "timeout"
        except aiohttp.ClientError:
            return "dropped"

    async def register(self, client: aiohttp.ClientSession, send: dict) -> None:
        """The sender's own app registering the send response: it retries too."""
        while time.monotonic() < self.give_up_at:
            try:
                async with self.slots, client.post("/messages", json=send) as response:
                    body = await response.text()
                    if response.status in (200, 201):
                        return
                    assert response.status >= 500, body
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5)
