"""Baseline: the obvious design, one RQ job per receipt enqueued from each request.

It does the same work per receipt as dlrq (the job is dlrq's own batch job with a
batch of one), so the comparison measures the design, not the job.
"""

from __future__ import annotations

import json
import os
from urllib.parse import parse_qsl

import redis
from rq import Queue, Retry
from rq.serializers import JSONSerializer
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dlrq.core import keys
from dlrq.core.receipt import Receipt, utc_now_iso

QUEUE = "naive"
queue = Queue(QUEUE, connection=redis.Redis.from_url(os.environ["DLRQ_REDIS_URL"]), serializer=JSONSerializer)


async def receive(request: Request) -> Response:
    params = dict(parse_qsl(request.url.query))
    body = await request.body()
    if body:
        params.update(json.loads(body))
    record = Receipt(params, utc_now_iso()).to_record()
    await run_in_threadpool(queue.enqueue, keys.BATCH_JOB, [record], retry=Retry(max=3))
    return Response(status_code=204)


app = Starlette(routes=[Route("/webhooks/delivery-receipt", receive, methods=["GET", "POST"])])
