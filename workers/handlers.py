"""Event handlers: what acts on a retry or an alert.

`deliver` is the RQ job (one per event and handler); a handler is a callable that
takes the event as a dict and raises to have RQ try again later. Built in: `log`,
`webhook` (signed POST) and `vonage` (resend through the SMS API); anything else is
a dotted path to a callable, `package.module:function` or `package.module.function`.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import logging
import time
from collections.abc import Callable
from functools import cache
from typing import Any

import httpx
import redis
from rq import get_current_job

from dlrq.core import keys
from dlrq.core.calls import run
from dlrq.core.connect import is_transient
from dlrq.core.events import OF_AN_ATTEMPT, RETRY, superseded
from dlrq.core.jobs import called_by_another
from dlrq.core.receipt import MESSAGES
from dlrq.core.registration import parse_send
from dlrq.core.settings import Settings
from dlrq.core.store import find_message, read_message, register

from . import current
from .dispatch import MARK_WITHIN

log = logging.getLogger("dlrq.handlers")
Handler = Callable[[dict[str, Any]], object]
SIGNATURE_HEADER = "X-Dlrq-Signature"
EVENT_ID_HEADER = "X-Dlrq-Event-Id"


class CannotResend(Exception):
    pass


def deliver(event: dict[str, Any], handler: str) -> None:
    """Counts each call's outcome (handler:<name>:ok|error); an error is raised on for RQ to retry.

    A call that succeeded is marked at once, and the marker is written even through a Redis
    outage: a job run again (its worker died, or Redis failed as RQ finished it) finds the
    marker and does not call the handler twice.
    """
    job = get_current_job()
    connection, marker = job.connection, keys.delivered(job.id)
    if connection.exists(marker):
        return
    settings = current.settings()
    handlers = settings.retry_handlers if event["kind"] == RETRY else settings.alert_handlers
    if (event["kind"] in OF_AN_ATTEMPT and not called_by_another(connection, event["id"], handlers, handler)
            and superseded(event["kind"], event.get("attempt"), run(connection, find_message(event["message"])))):
        log.info("%s: not called, superseded (the message was retried or delivered since)", event["id"])
        mark_delivered(connection, marker, keys.count_handler(handler, "superseded"), settings, keys.SUPERSEDED)
        return
    try:
        resolve(handler)(event)
    except Exception:
        connection.hincrby(keys.COUNTERS, keys.count_handler(handler, "error"), 1)
        raise
    mark_delivered(connection, marker, keys.count_handler(handler, "ok"), settings)


def mark_delivered(connection: redis.Redis, marker: str, counter: str, settings: Settings, how: str = "") -> None:
    """The marker (when the call was made: the console's record of it, RQ keeps no result) must outlive
    a Redis outage and, with DLRQ_ACK_REPLICAS, a failover: it is written
    again until that many replicas confirm it (a marker lost with its primary means a second call)."""
    deadline = time.monotonic() + MARK_WITHIN
    pause = 0.1
    while True:
        try:
            with connection.pipeline(transaction=False) as pipe:
                pipe.set(marker, f"{how}{time.time():.3f}", ex=settings.message_ttl)
                if settings.ack_replicas:
                    pipe.execute_command("WAIT", settings.ack_replicas, int(settings.ack_replica_timeout * 1000))
                replies = pipe.execute()
            if not settings.ack_replicas or replies[-1] >= settings.ack_replicas:
                connection.hincrby(keys.COUNTERS, counter, 1)
                return
            problem = f"{replies[-1]} of {settings.ack_replicas} replicas confirmed it"
        except redis.RedisError as exc:
            if not is_transient(exc):
                raise
            problem = f"Redis unreachable: {exc}"
        if time.monotonic() + pause > deadline:
            raise RuntimeError(f"the handler call succeeded but could not be marked so: {problem}")
        log.warning("the handler call succeeded; marking it so again in %.1f s (%s)", pause, problem)
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


def resolve(name: str) -> Handler:
    if name in BUILT_IN:
        return BUILT_IN[name]
    module, _, attribute = name.rpartition(":") if ":" in name else name.rpartition(".")
    if not module:
        raise ValueError(f"handler {name!r} is neither built in ({', '.join(BUILT_IN)}) nor a dotted path")
    return getattr(importlib.import_module(module), attribute)


NUMBER_FIELDS = ("to", "msisdn")


def mask(number: Any) -> Any:
    """Phone numbers never reach the logs whole: the last two digits are enough to tell them apart."""
    return "*" * max(0, len(number) - 2) + number[-2:] if isinstance(number, str) and number else number


def log_event(event: dict[str, Any]) -> None:
    full = current.settings().log_phone_numbers
    shown = {k: mask(v) if k in NUMBER_FIELDS and not full else v for k, v in event.items()}
    log.warning("%s: %s", event["kind"], json.dumps(shown, sort_keys=True))


@cache
def http() -> httpx.Client:
    """The process's client for handler calls. Building a client (its TLS context) costs about 20 ms
    of CPU, twenty-five times a call to a local receiver; this one is built once and keeps
    connections open between calls, for less than the idle timeout of common servers (gunicorn's 2 s)."""
    return httpx.Client(limits=httpx.Limits(keepalive_expiry=1.0))


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_webhook(event: dict[str, Any]) -> None:
    """POST the event as JSON, signed with HMAC-SHA256 of the body; any non-2xx is retried."""
    settings = current.settings()
    if not settings.webhook_url or settings.webhook_secret is None:
        raise ValueError("the webhook handler needs DLRQ_WEBHOOK_URL and DLRQ_WEBHOOK_SECRET")
    body = json.dumps(event, sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        EVENT_ID_HEADER: event["id"],
        SIGNATURE_HEADER: sign(body, settings.webhook_secret.get_secret_value()),
    }
    response = http().post(settings.webhook_url, content=body, headers=headers, timeout=settings.webhook_timeout)
    response.raise_for_status()


def resend_via_vonage(event: dict[str, Any]) -> None:
    """Send the registered text again and register that send as the message's next attempt.

    Skips the call when the next attempt is already registered (this job ran before and
    crashed after registering). A crash between the SMS API's answer and the registration
    would send twice: at least once, as every handler.
    """
    if event["kind"] != "retry":
        return
    if event.get("api") == MESSAGES:
        log.warning("message %s was sent through the Messages API: the vonage handler resends SMS API "
                    "messages only, so it is not resent", event["message"])
        return
    settings = current.settings()
    connection = get_current_job().connection
    message = run(connection, read_message(event["message"]))
    if message is None:
        raise CannotResend(f"message {event['message']} is not registered: nothing to resend")
    meta = message.meta
    if len(message.attempts) > event["attempt"]:
        return
    if not meta.get("text") or not meta.get("from") or not meta.get("to"):
        raise CannotResend(f"message {event['message']} was registered without text, from and to")
    if not settings.vonage_api_key or settings.vonage_api_secret is None:
        raise CannotResend("the vonage handler needs DLRQ_VONAGE_API_KEY and DLRQ_VONAGE_API_SECRET")
    form = {
        "api_key": settings.vonage_api_key,
        "api_secret": settings.vonage_api_secret.get_secret_value(),
        "from": meta["from"],
        "to": meta["to"],
        "text": meta["text"],
    }
    if meta.get("client_ref"):
        form["client-ref"] = meta["client_ref"]
    url = f"{settings.vonage_base_url.rstrip('/')}/sms/json"
    response = http().post(url, data=form, timeout=settings.webhook_timeout)
    response.raise_for_status()
    sent = {**response.json(), "text": meta["text"], "from": meta["from"], "retry_of": event["message"]}
    registered = run(connection, register(parse_send(sent), settings))
    log.info("message %s resent as attempt %d", event["message"], registered.attempt)


BUILT_IN: dict[str, Handler] = {"log": log_event, "webhook": post_webhook, "vonage": resend_via_vonage}
