"""`dlrq register` and `dlrq show`: a send registered, a message found."""

from __future__ import annotations

import json
from typing import IO

import click
from redis.exceptions import RedisError

from dlrq.core import connect, jsondoc
from dlrq.core.calls import NotReplicated, run
from dlrq.core.receipt import InvalidReceipt
from dlrq.core.registration import parse_send
from dlrq.core.store import find_message, register

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
def show(message_id: str) -> None:
    """Print a message's state as JSON (any part's messageId works)."""
    settings = load_settings()
    try:
        with connect.client(settings) as client:
            found = run(client, find_message(message_id))
    except RedisError as exc:
        unreachable(settings, exc)
    if found is None:
        raise click.ClickException(f"no message {message_id} on {where(settings)}")
    click.echo(json.dumps(found, indent=2))
