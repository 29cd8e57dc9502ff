"""The routes both HTTP processes serve: the probes, the registration of a send, and the store they share.

Each process (the ingest, `dlrq api`) opens its own Redis client and watches it (StoreWatch);
the routes find both in the app's state.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dlrq.core.calls import NotReplicated, arun
from dlrq.core.connect import async_client
from dlrq.core.receipt import InvalidReceipt
from dlrq.core.registration import parse_send
from dlrq.core.settings import Settings
from dlrq.core.store import register

from .access import Access
from .errors import error
from .params import parse_json, read_body
from .watch import StoreWatch

log = logging.getLogger("dlrq.ingest")


def unavailable_headers(settings: Settings) -> dict[str, str]:
    return {"Retry-After": str(settings.retry_after)}


@asynccontextmanager
async def store(app: Starlette, settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """The process's Redis client and its watch, in app.state (redis, watch), while the app runs."""
    client = async_client(settings)
    watch = StoreWatch(client, settings.effective_redis_url, settings.ack_replicas, settings.memory_high_water)
    watching = asyncio.get_running_loop().create_task(watch.run(), name="dlrq-store-watch")
    app.state.redis, app.state.watch = client, watch
    try:
        yield client
    finally:
        watching.cancel()
        await client.aclose()


def probes(settings: Settings) -> list[Route]:
    headers = unavailable_headers(settings)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "process": os.getpid()})

    async def readyz(request: Request) -> Response:
        """Ready when a write succeeds, Redis keeps every key and has room: answering is not enough if it
        refuses writes (out of memory, a full disk, a read-only replica), may evict, or is nearly full."""
        watch: StoreWatch = request.app.state.watch
        problem = await watch.check()
        if problem is not None:
            return error(503, "storage_unavailable", problem.detail, headers)
        return JSONResponse({"status": "ready", **watch.headroom()})

    return [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]


def registration(settings: Settings, access: Access) -> Route:
    """POST /messages: a send registered, durably (on DLRQ_ACK_REPLICAS replicas too) before it is answered."""
    headers = unavailable_headers(settings)

    async def register_send(request: Request) -> Response:
        refused = access.refusal(request)
        if refused is not None:
            return refused
        watch: StoreWatch = request.app.state.watch
        if watch.unsafe:
            return error(503, "storage_unavailable", watch.unsafe, headers)
        try:
            body = await read_body(request.receive, request.headers.get("content-length", "").encode() or None)
            send = parse_send(parse_json(body, request.headers.get("content-type", "")))
            registered = await arun(request.app.state.redis, register(send, settings),
                                    settings.ack_replicas, settings.ack_replica_timeout)
        except InvalidReceipt as exc:
            return error(exc.http_status, exc.code, exc.detail)
        except (RedisError, NotReplicated) as exc:
            return error(503, "storage_unavailable", f"not stored: {exc}", headers)
        return JSONResponse(registered.answer(), status_code=201 if registered.created else 200)

    return Route("/messages", register_send, methods=["POST"])


async def internal_error(request: Request, exc: Exception) -> Response:
    """Never a plain-text 500: a client always gets the contract's JSON error."""
    log.exception("%s %s failed", request.method, request.url.path)
    return error(500, "internal_error", "the server failed to answer; it has been logged")


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error(exc.status_code, code, str(exc.detail), exc.headers)


EXCEPTION_HANDLERS = {HTTPException: http_error, Exception: internal_error}
