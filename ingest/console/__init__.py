"""The web console, served by `dlrq api` under /console: delivery at a glance, a message's
story, failed work handled. Server-rendered (Jinja2); the overview's chart is uPlot, vendored.

A Starlette app of its own, mounted by the api; the webhook never goes through it. Every page
carries a Content-Security-Policy (scripts and styles from the console itself only, no framing).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from importlib.resources import files
from typing import Any

from jinja2 import pass_context
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders, State
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dlrq.core import connect
from dlrq.core import failed as failed_jobs
from dlrq.core.settings import Settings

from ..access import Access
from . import auth, data
from .formats import FILTERS, masker

PATH = "/console"  # where the api mounts it; the session cookie goes nowhere else
DIMENSIONS = {"network": "Networks", "country": "Countries", "client_ref": "Client-refs"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class SecurityHeaders:
    """Every answer of the console with SECURITY_HEADERS."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


@pass_context
def path_for(context: dict[str, Any], name: str, /, **path_params: Any) -> str:
    """Templates link by path: Starlette's url_for builds the request's Host header into each link."""
    return context["request"].url_for(name, **path_params).path


def console_app(settings: Settings, access: Access, app_state: State) -> Starlette:
    """`app_state`: the app's state (its Redis client and its eye on Redis, once it has started)."""
    assert settings.api_token is not None, "the console signs in with the API token"
    token = settings.api_token.get_secret_value()
    templates = Jinja2Templates(directory=str(files(__package__).joinpath("templates")))
    templates.env.filters.update(FILTERS, mask=masker(settings.log_phone_numbers))
    templates.env.globals["url_for"] = path_for
    sync = connect.client(settings)  # RQ's registries and jobs have no asyncio API

    def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context.update(csrf=auth.csrf_token(request), signed_in=auth.signed_in(request))
        return templates.TemplateResponse(request, name, context, status_code=status)

    def unavailable(request: Request, exc: Exception) -> Response:
        return page(request, "error.html", 503, title="Redis is unreachable", detail=str(exc))

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return page(request, "login.html", title="Sign in")
        form = await request.form()
        if not await auth.csrf_ok(request):
            return page(request, "login.html", 403, title="Sign in", problem="The form expired: try again.")
        client = access.client(request)
        wait = access.guesses.wait(client)
        if wait:
            return page(request, "login.html", 429, title="Sign in",
                        problem=f"Too many wrong tokens from {client}: try again in {wait:.0f} s.")
        if not access.matches(str(form.get("token", ""))):
            access.guesses.wrong(client)
            return page(request, "login.html", 401, title="Sign in", problem="That is not the API token.")
        request.session.clear()
        request.session.update(signed_in=True)
        target = str(form.get("next") or "")
        if target.startswith(PATH + "/") and "//" not in target and "\\" not in target:
            return RedirectResponse(target, status_code=303)
        return auth.redirect(request, "console:overview")

    @auth.changes_state
    async def logout(request: Request) -> Response:
        request.session.clear()
        return auth.redirect(request, "console:login")

    @auth.login_required
    async def overview(request: Request) -> Response:
        try:
            state = await data.overview(app_state.redis, settings, datetime.now(timezone.utc).timestamp())
        except RedisError as exc:
            return unavailable(request, exc)
        return page(request, "overview.html", title="Overview", state=state, readiness=_readiness(request))

    @auth.login_required
    async def overview_data(request: Request) -> Response:
        """What the overview refreshes itself with, every few seconds."""
        try:
            now = datetime.now(timezone.utc).timestamp()
            state = await data.overview(app_state.redis, settings, now)
            state["day"] = await data.throughput(app_state.redis, "day", now)
        except RedisError as exc:
            return JSONResponse({"error": "storage_unavailable", "detail": str(exc)}, status_code=503)
        return JSONResponse({**state, "readiness": _readiness(request)})

    @auth.login_required
    async def networks(request: Request) -> Response:
        by = request.query_params.get("by", "network")
        by = by if by in DIMENSIONS else "network"
        span = request.query_params.get("span", "24h")
        span = span if span in data.SPANS else "24h"
        end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        try:
            found = await data.hourly(app_state.redis, by, end - data.SPANS[span], end)
        except RedisError as exc:
            return unavailable(request, exc)
        return page(request, "networks.html", title=DIMENSIONS[by], by=by, dimensions=DIMENSIONS, span=span,
                    spans=data.SPANS, report=found.report, rates=found.rates, currency=settings.currency,
                    worse=data.worse_than_the_rest(found.report))

    @auth.login_required
    async def messages(request: Request) -> Response:
        query = request.query_params.get("q", "").strip()
        first = request.query_params.get("from", "0")
        first = max(0, min(int(first), 10**9)) if first.isdigit() else 0
        try:
            found = await data.search(app_state.redis, query, first) if query else data.Found([], 0, 0)
            if found.total == 1 and len(found.views) == 1 and first == 0:
                story = await data.story(app_state.redis, sync, settings, found.views[0]["id"])
                return page(request, "message.html", title=f"Message {found.views[0]['id']}", q=query, story=story)
        except RedisError as exc:
            return unavailable(request, exc)
        return page(request, "search.html", title="Messages", q=query, found=found, page_size=data.PAGE)

    @auth.login_required
    async def failed(request: Request) -> Response:
        try:
            jobs = await run_in_threadpool(failed_jobs.list_failed, sync, settings.queues, 500)
        except RedisError as exc:
            return unavailable(request, exc)
        done = request.query_params.get("done")
        return page(request, "failed.html", title="Failed work", jobs=jobs, done=done)

    @auth.login_required
    async def confirm(request: Request) -> Response:
        action = request.query_params.get("action", "")
        if action not in ("requeue", "purge"):
            return auth.redirect(request, "console:failed")
        count = await run_in_threadpool(failed_jobs.count, sync, settings.queues)
        return page(request, "confirm.html", title="Confirm", action=action, count=count)

    @auth.changes_state
    async def act(request: Request) -> Response:
        """Requeue or purge one failed job, or every one (after the confirmation page)."""
        form = await request.form()
        action = request.path_params["action"]
        if action not in ("requeue", "purge"):
            return Response("No such action.", status_code=404, media_type="text/plain")
        job_ids = None if form.get("all") == "yes" else {str(form.get("job_id", ""))}
        operation = failed_jobs.requeue if action == "requeue" else failed_jobs.purge
        try:
            count = await run_in_threadpool(operation, sync, settings.queues, job_ids)
        except RedisError as exc:
            return unavailable(request, exc)
        verb = "requeued" if action == "requeue" else "deleted"
        return auth.redirect(request, "console:failed", done=f"{verb} {count}")

    def _readiness(request: Request) -> str | None:
        problem = app_state.watch.problem
        return None if problem is None else problem.detail

    static = StaticFiles(directory=str(files(__package__).joinpath("static")))
    routes = [
        Route("/", overview, name="overview"),
        Route("/overview.json", overview_data, name="overview_data"),
        Route("/login", login, methods=["GET", "POST"], name="login"),
        Route("/logout", logout, methods=["POST"], name="logout"),
        Route("/networks", networks, name="networks"),
        Route("/messages", messages, name="messages"),
        Route("/failed", failed, name="failed"),
        Route("/failed/confirm", confirm, name="confirm"),
        Route("/failed/{action:str}", act, methods=["POST"], name="act"),
        Mount("/static", static, name="static"),
    ]
    middleware = [Middleware(SessionMiddleware, secret_key=auth.session_key(token), session_cookie=auth.SESSION_COOKIE,
                             max_age=auth.SESSION_HOURS * 3600, path=PATH, same_site="strict")]
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders), *middleware])

