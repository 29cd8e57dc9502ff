"""Many HTTP requests at once, for the tests that need volume.

aiohttp's client, as in the fault suite: httpx's AsyncClient spent 6.4 ms of client CPU a request
here (its pool rescans every connection for each request, and without sniffio httpcore retries a
failed import on every call), so the tests measured their own client; aiohttp spends 0.3 ms.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

import aiohttp

# (method, path, keyword arguments for aiohttp: json=..., data=... for a form, params=...)
Request = tuple[str, str, dict[str, Any]]


async def request_all(base: str, requests: Iterable[Request], concurrency: int = 64) -> list[tuple[int, bytes]]:
    """Each request's status and body, in order; at most `concurrency` in flight."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as session:

        async def one(method: str, path: str, kwargs: dict[str, Any]) -> tuple[int, bytes]:
            async with session.request(method, path, **kwargs) as response:
                return response.status, await response.read()

        return await asyncio.gather(*(one(*request) for request in requests))


def run_all(base: str, requests: Iterable[Request], concurrency: int = 64) -> list[tuple[int, bytes]]:
    return asyncio.run(request_all(base, requests, concurrency))


def message_views(base: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """`GET /messages/{id}` of each id (each must answer 200), by id."""
    answers = run_all(base, [("GET", f"/messages/{message_id}", {}) for message_id in ids], 32)
    for message_id, (code, body) in zip(ids, answers):
        assert code == 200, (message_id, code, body[:200])
    return {message_id: json.loads(body) for message_id, (_, body) in zip(ids, answers)}
