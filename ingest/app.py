"""The Starlette application: the webhook, the message query and the probes."""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from ipaddress import ip_address
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from dlrq.core import analytics
from dlrq.core.accounts import Accounts, UnknownAccount, parse_accounts, single
from dlrq.core.calls import NotReplicated, arun
from dlrq.core.connect import async_client
from dlrq.core.deployment import read_deployment
from dlrq.core.jobs import QueueKeys
from dlrq.core.receipt import InvalidReceipt, Receipt, validate
from dlrq.core.registration import parse_send
from dlrq.core.settings import Settings, get_settings
from dlrq.core.store import find_message, read_analytics, register

from .batcher import GroupCommit
from .bearer import verify_bearer
from .console import PATH as console_path
from .console import console_app
from .enqueue import BatchEnqueuer, Recording
from .message_status import message_statuses
from .metrics import IngestMetrics, exposition
from .params import parse_json, read_body
from .signature import Unauthorized, verify
from .watch import StoreWatch
from .webhook import Webhook, error, sms_receipts

log = logging.getLogger("dlrq.ingest")
LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def recording(settings: Settings) -> Recording | None:
    """DLRQ_RECORD_MAX_BATCHES=0 or DLRQ_RECORD_MAX_AGE=0 turns the record off."""
    if not settings.record_max_batches or not settings.record_max_age:
        return None
    return Recording(settings.record_max_batches, settings.record_max_age)


def load_accounts(settings: Settings) -> Accounts:
    """The accounts file's accounts, or the one the signature settings describe; ValueError naming the file."""
    if settings.accounts_file is None:
        secret = settings.signature_secret.get_secret_value() if settings.signature_secret else None
        return single(secret, settings.signature_method, settings.api_key)
    try:
        return parse_accounts(settings.accounts_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"DLRQ_ACCOUNTS_FILE {settings.accounts_file}: {exc}") from exc


class Ingest(Starlette):
    """Starlette, except that the webhooks' requests skip its middleware and router.

    They are nearly all the traffic, and matching routes and wrapping middleware cost
    a tenth of what the ingest spends on a receipt.
    """

    def __init__(self, webhooks: dict[str, ASGIApp], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._webhooks = webhooks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        webhook = self._webhooks.get(scope["path"]) if scope["type"] == "http" else None
        if webhook is not None:
            scope["app"] = self
            await webhook(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    accounts = load_accounts(settings)
    token = settings.api_token.get_secret_value().encode() if settings.api_token else None
    unavailable_headers = {"Retry-After": str(settings.retry_after)}
    metrics = IngestMetrics()
    queues = [QueueKeys(settings.queue), QueueKeys(settings.handler_queue)]

    def check(params: dict[str, str]) -> dict[str, str]:
        """An SMS receipt's `api-key` names its account, whose secrets (if any) must have signed it."""
        try:
            account = accounts.select(params.get("api-key"))
        except UnknownAccount as exc:
            raise Unauthorized("api_key_mismatch", str(exc)) from exc
        if account.secrets:
            verify(params, account.secrets, account.method, time.time(), settings.signature_max_skew)
        return validate(params)

    def check_bearer(authorization: bytes | None, body: bytes, now: float) -> None:
        verify_bearer(authorization, body, accounts, now, settings.signature_max_skew)

    # Without a token, the management API is open only to this machine.
    closed = token is None and not is_loopback(settings.host)

    def authorised(request: Request) -> bool:
        if token is None:
            return not closed
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token)

    def unauthorised() -> Response:
        if closed:
            return error(401, "unauthorized", "the management API is closed: set DLRQ_API_TOKEN to open it")
        return error(401, "unauthorized", "send Authorization: Bearer <DLRQ_API_TOKEN>")

    async def message(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        try:
            found = await arun(request.app.state.redis, find_message(request.path_params["id"]))
        except RedisError:
            return error(503, "storage_unavailable", "Redis is unreachable", unavailable_headers)
        if found is None:
            return error(404, "not_found", "no receipt or registration for this id")
        return JSONResponse(found)

    async def register_send(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        if request.app.state.watch.unsafe:
            return error(503, "storage_unavailable", request.app.state.watch.unsafe, unavailable_headers)
        try:
            body = await read_body(request.receive, request.headers.get("content-length", "").encode() or None)
            send = parse_send(parse_json(body, request.headers.get("content-type", "")))
            registered = await arun(request.app.state.redis,
                                    register(send, settings),
                                    settings.ack_replicas, settings.ack_replica_timeout)
        except InvalidReceipt as exc:
            return error(exc.http_status, exc.code, exc.detail)
        except (RedisError, NotReplicated) as exc:
            return error(503, "storage_unavailable", f"not stored: {exc}", unavailable_headers)
        return JSONResponse(registered.answer(), status_code=201 if registered.created else 200)

    async def analytics_report(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        query = request.query_params
        by = query.get("by", "network")
        try:
            start, end = analytics.span(query.get("since"), query.get("until"), datetime.now(timezone.utc))
            found = await arun(request.app.state.redis, read_analytics(by, start, end))
        except ValueError as exc:
            return error(400, "malformed_field", str(exc))
        except RedisError:
            return error(503, "storage_unavailable", "Redis is unreachable", unavailable_headers)
        return JSONResponse(found)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "process": os.getpid()})

    async def readyz(request: Request) -> Response:
        """Ready when a write succeeds and Redis keeps every key: answering is not enough if it
        refuses writes (out of memory, a full disk, a read-only replica) or may evict."""
        problem = await request.app.state.watch.check()
        if problem is not None:
            return error(503, "storage_unavailable", problem.detail, unavailable_headers)
        return JSONResponse({"status": "ready"})

    async def metrics_text(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        state = await read_deployment(request.app.state.redis, queues, datetime.now(timezone.utc))
        return Response(exposition(metrics, state, settings.metrics_network_label), media_type=CONTENT_TYPE_LATEST)

    async def internal_error(request: Request, exc: Exception) -> Response:
        """Never a plain-text 500: a client always gets the contract's JSON error."""
        log.exception("%s %s failed", request.method, request.url.path)
        return error(500, "internal_error", "the server failed to answer; it has been logged")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error(exc.status_code, code, str(exc.detail), exc.headers)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if closed:
            log.warning("listening on %s without DLRQ_API_TOKEN: /messages and /metrics answer 401 "
                        "(set DLRQ_API_TOKEN to a long random string to use them)", settings.host)
        client = async_client(settings)
        watch = StoreWatch(client, settings.effective_redis_url, settings.ack_replicas)
        watching = asyncio.get_running_loop().create_task(watch.run(), name="dlrq-store-watch")
        enqueue = BatchEnqueuer(client, settings.queue, settings.job_timeout, recording(settings),
                                settings.ack_replicas, settings.ack_replica_timeout)

        async def write(receipts: list[Receipt]) -> str:
            batch_id = await enqueue(receipts)
            metrics.batch_size.observe(len(receipts))
            return batch_id

        commit = GroupCommit(
            write,
            max_size=settings.batch_max_size,
            max_wait=settings.batch_max_wait_ms / 1000,
            timeout=settings.store_timeout,
            outcome=watch.written,
        )
        commit.start()
        # Everything loaded so far lives as long as the process. Leaving it out of the
        # collector's full passes took the p99 latency at 32 connections from ~23 ms to ~4 ms.
        gc.collect()
        gc.freeze()
        app.state.redis = client
        app.state.commit = commit
        app.state.watch = watch
        if console_on:
            log.info("web console at http://%s:%d%s/ (sign in with DLRQ_API_TOKEN)", settings.host, settings.port,
                     console_path)
        try:
            yield
        finally:
            watching.cancel()
            await commit.close()
            await client.aclose()

    console_on = settings.api_token is not None and settings.console is not False
    webhooks: dict[str, ASGIApp] = {
        settings.webhook_path: Webhook(sms_receipts(check), ("GET", "POST"), settings.ack_status,
                                       settings.retry_after, metrics),
        settings.message_status_path: Webhook(message_statuses(check_bearer), ("POST",), settings.ack_status,
                                              settings.retry_after, metrics),
    }
    routes = [
        Route("/messages", register_send, methods=["POST"]),
        Route("/messages/{id}", message, methods=["GET"]),
        Route("/analytics", analytics_report, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
    ]
    app = Ingest(webhooks, routes=routes, lifespan=lifespan,
                 exception_handlers={HTTPException: http_error, Exception: internal_error})
    if console_on:
        console = console_app(settings, settings.api_token.get_secret_value(), app.state)
        app.router.routes.append(Mount(console_path, console, name="console"))
    elif settings.console:
        log.warning("DLRQ_CONSOLE is on but DLRQ_API_TOKEN is unset: the console, which signs in with it, is off")
    return app
