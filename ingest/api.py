"""`dlrq api`: the management routes and the console, in a process of their own.

Everything that reads (a message, analytics, the deployment's metrics, the console's pages) runs
here, on its own event loop, so that no reader, however heavy its query, can delay a webhook's
acknowledgement. Every query is bounded: spans to the analytics' retention, answers to
analytics.MAX_ROWS rows, each read to a day of hours at a time.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from dlrq.core import analytics
from dlrq.core.calls import arun
from dlrq.core.deployment import read_deployment
from dlrq.core.jobs import QueueKeys
from dlrq.core.settings import Settings, get_settings
from dlrq.core.store import find_message, read_analytics

from .access import Access
from .console import PATH as console_path
from .console import console_app
from .errors import error
from .metrics import exposition
from .routes import EXCEPTION_HANDLERS, probes, registration, store, unavailable_headers

log = logging.getLogger("dlrq.api")


def create_api(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    access = Access(settings, settings.api_host)
    headers = unavailable_headers(settings)
    queues = [QueueKeys(settings.queue), QueueKeys(settings.handler_queue)]
    process = CollectorRegistry()
    ProcessCollector(registry=process)

    async def message(request: Request) -> Response:
        refused = access.refusal(request)
        if refused is not None:
            return refused
        try:
            found = await arun(request.app.state.redis, find_message(request.path_params["id"]))
        except RedisError:
            return error(503, "storage_unavailable", "Redis is unreachable", headers)
        if found is None:
            return error(404, "not_found", "no receipt or registration for this id")
        return JSONResponse(found)

    async def analytics_report(request: Request) -> Response:
        refused = access.refusal(request)
        if refused is not None:
            return refused
        query = request.query_params
        by = query.get("by", "network")
        try:
            now = datetime.now(timezone.utc)
            start, end = analytics.span(query.get("since"), query.get("until"), now, settings.analytics_retention)
            found = await arun(request.app.state.redis, read_analytics(by, start, end, now))
            found["currency"] = settings.currency
        except ValueError as exc:
            return error(400, "malformed_field", str(exc))
        except RedisError:
            return error(503, "storage_unavailable", "Redis is unreachable", headers)
        return JSONResponse(found)

    async def metrics_text(request: Request) -> Response:
        """The deployment's figures as Redis holds them (queues, workers, counters, analytics), and this
        process'; each ingest process serves its own acknowledgements at its /metrics."""
        refused = access.refusal(request)
        if refused is not None:
            return refused
        state = await read_deployment(request.app.state.redis, queues, datetime.now(timezone.utc))
        body = generate_latest(process) + exposition(state, settings.metrics_network_label)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if access.closed:
            log.warning("listening on %s without DLRQ_API_TOKEN: every route but the probes answers 401 "
                        "(set DLRQ_API_TOKEN to a long random string to use them)", settings.api_host)
        async with store(app, settings):
            if console_on:
                log.info("web console at http://%s:%d%s/ (sign in with DLRQ_API_TOKEN)", settings.api_host,
                         settings.api_port, console_path)
            yield

    async def favicon(request: Request) -> Response:
        """What a browser asks for first, whatever page it opened: the console's icon."""
        return RedirectResponse(f"{console_path}/static/favicon.svg", 308)

    console_on = settings.api_token is not None and settings.console is not False
    routes = [
        registration(settings, access),
        Route("/messages/{id}", message, methods=["GET"]),
        Route("/analytics", analytics_report, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
        *probes(settings),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)
    if console_on:
        app.router.routes.append(Mount(console_path, console_app(settings, access, app.state), name="console"))
        app.router.routes.append(Route("/favicon.ico", favicon, methods=["GET"]))
    elif settings.console:
        log.warning("DLRQ_CONSOLE is on but DLRQ_API_TOKEN is unset: the console, which signs in with it, is off")
    return app
