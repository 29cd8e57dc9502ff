"""The ingest: the webhooks, the registration of sends, the probes and the process' own metrics.

Nothing else runs on its event loop: the message queries, analytics, the console and the
deployment's metrics are `dlrq api`'s (ingest/api.py), so that no reader can delay an
acknowledgement.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from dlrq.core.accounts import Accounts, UnknownAccount, parse_accounts, single
from dlrq.core.receipt import Receipt, validate
from dlrq.core.settings import Settings, get_settings

from .access import Access, client_address, networks, within
from .batcher import GroupCommit
from .bearer import verify_bearer
from .enqueue import BatchEnqueuer, Recording
from .message_status import message_statuses
from .metrics import IngestMetrics
from .routes import EXCEPTION_HANDLERS, probes, registration, store
from .signature import Unauthorized, verify
from .webhook import Webhook, sms_receipts

log = logging.getLogger("dlrq.ingest")


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


def senders(settings: Settings) -> Callable[[Scope], bool] | None:
    """Whether a request comes from a network allowed to post receipts (None: every one is)."""
    allowed, proxies = networks(settings.webhook_allow), networks(settings.trusted_proxies)
    if not allowed:
        return None

    def admits(scope: Scope) -> bool:
        peer = scope["client"][0] if scope.get("client") else ""
        forwarded = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"), None)
        return within(client_address(peer, forwarded, proxies), allowed)

    return admits


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
    access = Access(settings, settings.host)
    metrics = IngestMetrics()

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

    async def metrics_text(request: Request) -> Response:
        """This process' own figures (acknowledgements, refusals, batches); the deployment's are `dlrq api`'s."""
        refused = access.refusal(request)
        if refused is not None:
            return refused
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if access.closed:
            log.warning("listening on %s without DLRQ_API_TOKEN: /messages and /metrics answer 401 "
                        "(set DLRQ_API_TOKEN to a long random string to use them)", settings.host)
        async with store(app, settings) as client:
            watch = app.state.watch
            enqueue = BatchEnqueuer(client, settings.queue, settings.job_timeout, recording(settings),
                                    settings.ack_replicas, settings.ack_replica_timeout)

            async def write(receipts: list[Receipt]) -> str:
                batch_id = await enqueue(receipts)
                metrics.batch_size.observe(len(receipts))
                return batch_id

            commit = GroupCommit(write, max_size=settings.batch_max_size, max_wait=settings.batch_max_wait_ms / 1000,
                                 timeout=settings.store_timeout, outcome=watch.written)
            commit.start()
            # Everything loaded so far lives as long as the process. Leaving it out of the
            # collector's full passes took the p99 latency at 32 connections from ~23 ms to ~4 ms.
            gc.collect()
            gc.freeze()
            app.state.commit = commit
            try:
                yield
            finally:
                await commit.close()

    admits = senders(settings)
    webhooks: dict[str, ASGIApp] = {
        settings.webhook_path: Webhook(sms_receipts(check), ("GET", "POST"), settings.ack_status,
                                       settings.retry_after, metrics, admits),
        settings.message_status_path: Webhook(message_statuses(check_bearer), ("POST",), settings.ack_status,
                                              settings.retry_after, metrics, admits),
    }
    routes = [registration(settings, access), *probes(settings), Route("/metrics", metrics_text, methods=["GET"])]
    return Ingest(webhooks, routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)
