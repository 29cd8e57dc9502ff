"""Baseline: the least a Starlette webhook can do (parse the receipt, answer 204, keep nothing)."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def receive(request: Request) -> Response:
    params = dict(parse_qsl(request.url.query))
    body = await request.body()
    if body:
        params.update(json.loads(body))
    return Response(status_code=204)


app = Starlette(routes=[Route("/webhooks/delivery-receipt", receive, methods=["GET", "POST"])])
