"""`dlrq register` and `dlrq show`: a send registered, a message found."""

from __future__ import annotations

import asyncio
import json
from typing import IO, Any

import click
from redis.exceptions import RedisError

from dlrq.core import connect, jsondoc
from dlrq.core.calls import NotReplicated, run
from dlrq.core.receipt import InvalidReceipt
from dlrq.core.registration import parse_send
from dlrq.core.settings import Settings
from dlrq.core.store import register

from .common import load_settings, unreachable, where


@click.command("register")
@click.argument("source", type=click.File("rb"))
def register_command(source: IO[bytes]) -> None:
    """Register a send: SOURCE (a file, or - for stdin) holds the SMS API's send response as JSON.

    Prints {"id": <logical id>, "parts": [...]}. Registering the same send again changes nothing.
    """
    settings = load_settings()
    try:
        send = parse_send(jsondoc.loads(source.read()))
    except InvalidReceipt as exc:
        raise click.ClickException(f"{exc.code}: {exc.detail}") from exc
    try:
        with connect.client(settings) as client:
            registered = run(client, register(send, settings),
                             settings.ack_replicas, settings.ack_replica_timeout)
    except InvalidReceipt as exc:
        raise click.ClickException(f"{exc.code}: {exc.detail}") from exc
    except NotReplicated as exc:
        raise click.ClickException(f"not stored on enough replicas: {exc}") from exc
    except RedisError as exc:
        unreachable(settings, exc)
    click.echo(json.dumps(registered.answer()))


@click.command()
@click.argument("message_id")
@click.option("--numbers", is_flag=True, help="Print phone numbers whole (by default, as in the console and the "
              "logs, only their last two digits unless DLRQ_LOG_PHONE_NUMBERS is true).")
def show(message_id: str, numbers: bool) -> None:
    """Print a message's state as JSON (any part's messageId works): GET /messages/{id}'s view, and
    `events`, what the console's timeline shows of each event raised and each handler's call."""
    settings = load_settings()
    try:
        found = asyncio.run(_story(settings, message_id))
    except RedisError as exc:
        unreachable(settings, exc)
    if found is None:
        raise click.ClickException(f"no message {message_id} on {where(settings)}")
    events = [{k: e[k] for k in ("id", "kind", "raised_at", "calls")} for e in found.events]
    shown = {**found.view, "events": events}
    click.echo(json.dumps(shown if numbers or settings.log_phone_numbers else _masked(shown), indent=2, default=str))


async def _story(settings: Settings, message_id: str) -> Any:
    """The console's story of the message (its view and events), or None."""
    from ingest.console.data import story

    client = connect.async_client(settings)
    try:
        with connect.client(settings) as sync:
            return await story(client, sync, settings, message_id)
    finally:
        await client.aclose()


def _masked(value: Any) -> Any:
    from workers.handlers import NUMBER_FIELDS, mask

    if isinstance(value, dict):
        return {k: mask(v) if k in NUMBER_FIELDS else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value
