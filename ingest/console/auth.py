"""Signing in to the console: the API token, exchanged for a signed session cookie; a CSRF token on every form.

The cookie (Starlette's SessionMiddleware: signed with itsdangerous) is HttpOnly and
SameSite=Strict, its key derived from the API token, so that a new token signs everybody out.
Every form that changes something carries the session's CSRF token, checked before anything is done.
Links and redirects are paths, never built from the request's Host header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from functools import wraps
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

SESSION_COOKIE = "dlrq_console"
SESSION_HOURS = 8
CSRF_FIELD = "csrf"

Handler = Callable[[Request], Awaitable[Response]]


def session_key(token: str) -> str:
    return hmac.new(token.encode(), b"dlrq console session", hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use)."""
    token = request.session.get(CSRF_FIELD)
    if not token:
        token = request.session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return str(token)


async def csrf_ok(request: Request) -> bool:
    form = await request.form()
    given, expected = str(form.get(CSRF_FIELD, "")), request.session.get(CSRF_FIELD, "")
    return bool(expected) and hmac.compare_digest(given.encode(), str(expected).encode())


def signed_in(request: Request) -> bool:
    return request.session.get("signed_in") is True


def path_to(request: Request, name: str, **query: str) -> str:
    """Where a route is, as a path (with a query): never the request's Host header, which anyone can write."""
    path = request.url_for(name).path
    return f"{path}?{urlencode(query)}" if query else path


def redirect(request: Request, name: str, **query: str) -> RedirectResponse:
    return RedirectResponse(path_to(request, name, **query), status_code=303)


def login_required(handler: Handler) -> Handler:
    @wraps(handler)
    async def guarded(request: Request) -> Response:
        if not signed_in(request):
            return redirect(request, "console:login", next=request.url.path)
        return await handler(request)

    return guarded


def changes_state(handler: Handler) -> Handler:
    """A POST that changes something: signed in, with the session's CSRF token, or refused (403)."""

    @wraps(handler)
    async def guarded(request: Request) -> Response:
        if not signed_in(request) or not await csrf_ok(request):
            return Response("Refused: sign in, and post the form the console gave you (its CSRF token).",
                            status_code=403, media_type="text/plain")
        return await handler(request)

    return guarded

