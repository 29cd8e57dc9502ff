"""The `dlrq` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from pydantic import ValidationError

from ingest.settings import Settings, get_settings

if TYPE_CHECKING:
    from ingest.replay import Summary


def load_settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        problems = "; ".join(f"DLRQ_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise click.ClickException(f"bad setting: {problems}") from exc


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Fields the JSON lines carry besides those a call passes in `extra` (request_id, ...).
JSON_FIELDS = ["levelname", "name", "message", "process"]


def setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    as_json = settings.log_format == "json" or (settings.log_format == "auto" and not sys.stderr.isatty())
    if as_json:
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level", "name": "logger"},
                                           timestamp=True))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)


@click.group()
def main() -> None:
    """dlrq: Vonage SMS delivery receipts, acknowledged at once, processed reliably."""


@main.command()
def ingest() -> None:
    """Serve the webhook and the message API (DLRQ_HOST:DLRQ_PORT)."""
    import uvicorn

    from ingest.app import create_app

    settings = load_settings()
    setup_logging(settings)
    # Uvicorn stops accepting on SIGTERM/SIGINT, answers the requests it holds, stores every
    # batch begun (lifespan shutdown), then raises the signal again. By then stopping is
    # clean, so that second signal is let pass and the exit status is 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        # The access log would print query strings, and GET receipts carry phone numbers in them.
        access_log=False,
        log_level=settings.log_level.lower(),
        # Uvicorn's own lines go through the handler set up above (JSON or text).
        log_config=None,
        lifespan="on",
    )
    logging.getLogger("dlrq.ingest").info("stopped: every acknowledged receipt is stored")


@main.command()
@click.option("--burst", is_flag=True, help="Quit once the queue is empty.")
@click.option("--name", default=None, help="Worker name (default: RQ's random one).")
def worker(burst: bool, name: str | None) -> None:
    """Apply queued receipt batches (an RQ SimpleWorker with the scheduler)."""
    from .worker import run_worker

    settings = load_settings()
    setup_logging(settings)
    run_worker(settings, burst=burst, name=name)


@main.command()
@click.argument("source", type=click.File("rb"))
def register(source) -> None:
    """Register a send: SOURCE (a file, or - for stdin) holds the SMS API's send response as JSON.

    Prints {"id": <logical id>, "parts": [...]}. Registering the same send again changes nothing.
    """
    from redis.exceptions import RedisError

    from ingest.app import redis_client
    from ingest.messages import register as store
    from ingest.params import JSON, parse_json
    from ingest.receipt import InvalidReceipt
    from ingest.registration import parse_send

    settings = load_settings()

    async def run() -> dict:
        client = redis_client(settings)
        try:
            send = parse_send(parse_json(source.read(), JSON))
            return (await store(client, send, settings.receipt_timeout, settings.message_ttl)).answer()
        finally:
            await client.aclose()

    try:
        click.echo(json.dumps(asyncio.run(run())))
    except InvalidReceipt as exc:
        raise click.ClickException(f"{exc.code}: {exc.detail}") from exc
    except RedisError as exc:
        raise click.ClickException(f"Redis unreachable at {settings.effective_redis_url}: {exc}") from exc


@main.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here (gzip when the name ends in .gz) instead of stdout.")
@click.option("--since", default=None, help="Only receipts recorded since this time (ISO 8601, or epoch seconds).")
def export(output: Path | None, since: str | None) -> None:
    """Stream the record of accepted receipts as JSONL, oldest first."""
    import redis
    from redis.exceptions import RedisError

    from ingest.record import export as write
    from ingest.record import open_output, parse_since

    settings = load_settings()
    try:
        since_ms = parse_since(since) if since else 0
    except ValueError as exc:
        raise click.BadParameter(f"{since!r} is neither ISO 8601 nor epoch seconds", param_hint="--since") from exc
    client = redis.Redis.from_url(settings.effective_redis_url)
    try:
        with open_output(output) as out:
            count = write(client, out, since_ms)
    except RedisError as exc:
        raise click.ClickException(f"Redis unreachable at {settings.effective_redis_url}: {exc}") from exc
    click.echo(f"exported {count} receipts", err=True)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--to", "url", default=None, help="POST each receipt to this webhook URL instead of the queue.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None, help="Receipts per second.")
@click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True,
              help="Requests in flight with --to.")
@click.option("--batch-size", type=click.IntRange(min=1, max=10_000), default=1000, show_default=True,
              help="Receipts per queued batch without --to.")
def replay(files: tuple[Path, ...], url: str | None, rate: float | None, concurrency: int, batch_size: int) -> None:
    """Replay JSONL files (recorded receipts or plain parameter objects; .gz too).

    Without --to, straight onto the queue through the ingest's batch path (no HTTP, no
    signature check; nothing is added to the record). Replaying a file twice changes nothing.
    """
    from tqdm import tqdm

    from ingest.app import redis_client
    from ingest.enqueue import BatchEnqueuer
    from ingest.replay import read_lines, replay_over_http, replay_to_queue, report

    settings = load_settings()
    lines = read_lines(files)

    async def run() -> Summary:
        with tqdm(unit=" receipts", unit_scale=True, file=sys.stderr) as bar:
            if url:
                return await replay_over_http(lines, url, rate, concurrency, bar.update)
            client = redis_client(settings)
            try:
                enqueue = BatchEnqueuer(client, settings.queue, settings.job_timeout)
                return await replay_to_queue(lines, enqueue, batch_size, rate, bar.update)
            finally:
                await client.aclose()

    summary = asyncio.run(run())
    report(summary)
    click.echo(summary.line())
    if summary.failed:
        sys.exit(1)


@main.command()
@click.option("--no-messages", is_flag=True, help="Skip counting messages by status (a scan of all of them).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
def stats(no_messages: bool, as_json: bool) -> None:
    """Queue depth, rates, failed jobs, counters, and messages by status."""
    import time
    from datetime import datetime, timezone

    import redis
    from tqdm import tqdm

    from ingest.app import redis_client
    from ingest.metrics import QueueKeys, read_deployment

    from .stats import message_statuses, render, throughput

    settings = load_settings()
    names = (settings.queue, settings.handler_queue)

    async def deployment():
        client = redis_client(settings)
        try:
            return await read_deployment(client, [QueueKeys(n) for n in names], datetime.now(timezone.utc))
        finally:
            await client.aclose()

    state = asyncio.run(deployment())
    if not state.redis_up:
        raise click.ClickException(f"Redis unreachable at {settings.effective_redis_url}")
    queues = {n: {"waiting": state.depth[n], "oldest_age": state.oldest_age[n], "failed": state.failed[n],
                  "scheduled": state.scheduled[n], "workers": state.workers[n]} for n in names}
    connection = redis.Redis.from_url(settings.effective_redis_url)
    rates = throughput(connection, time.time())
    messages = None
    if not no_messages:
        with tqdm(unit=" keys", unit_scale=True, file=sys.stderr, leave=False, disable=None) as bar:
            messages = message_statuses(connection, bar.update)
    if as_json:
        click.echo(json.dumps({"queues": queues, "rates": rates, "counters": state.counters, "messages": messages}))
    else:
        click.echo(render(queues, rates, state.counters, messages))


@main.group()
def failed() -> None:
    """Jobs that ran out of retries: receipt batches and handler calls."""


def failed_registries(settings: Settings) -> list:
    import redis
    from rq import Queue
    from rq.registry import FailedJobRegistry
    from rq.serializers import JSONSerializer

    connection = redis.Redis.from_url(settings.effective_redis_url)
    return [
        FailedJobRegistry(queue=Queue(name, connection=connection, serializer=JSONSerializer))
        for name in (settings.queue, settings.handler_queue)
    ]


@failed.command("list")
def failed_list() -> None:
    """One line per failed job: queue, job id, what it was, why it failed."""
    from rq.job import Job

    for registry in failed_registries(load_settings()):
        for job_id in registry.get_job_ids():
            job = Job.fetch(job_id, connection=registry.connection, serializer=registry.serializer)
            result = job.latest_result()
            reason = (result.exc_string or "").strip().splitlines()[-1:] if result else []
            click.echo(f"{registry.name}\t{job_id}\t{job.description}\t{reason[0] if reason else '?'}")


@failed.command("requeue")
@click.argument("job_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Requeue every failed job.")
def failed_requeue(job_ids: tuple[str, ...], everything: bool) -> None:
    """Put failed jobs back on their queue (after fixing what made them fail)."""
    if not job_ids and not everything:
        raise click.UsageError("name job ids, or --all")
    count = 0
    for registry in failed_registries(load_settings()):
        for job_id in registry.get_job_ids():
            if everything or job_id in job_ids:
                registry.requeue(job_id)
                count += 1
    click.echo(f"requeued {count} job(s)")


@failed.command("purge")
@click.option("--yes", is_flag=True, help="Do not ask.")
def failed_purge(yes: bool) -> None:
    """Delete every failed job."""
    registries = failed_registries(load_settings())
    total = sum(registry.count for registry in registries)
    if total and not yes:
        click.confirm(f"delete {total} failed job(s)?", abort=True)
    for registry in registries:
        for job_id in registry.get_job_ids():
            registry.remove(job_id, delete_job=True)
    click.echo(f"deleted {total} job(s)")


@main.command()
@click.argument("message_id")
def show(message_id: str) -> None:
    """Print a message's state as JSON (any part's messageId works)."""
    from redis.exceptions import RedisError

    from ingest.app import redis_client
    from ingest.messages import find_message

    settings = load_settings()

    async def lookup() -> dict | None:
        client = redis_client(settings)
        try:
            return await find_message(client, message_id)
        finally:
            await client.aclose()

    try:
        found = asyncio.run(lookup())
    except RedisError as exc:
        raise click.ClickException(f"Redis unreachable at {settings.effective_redis_url}: {exc}") from exc
    if found is None:
        raise click.ClickException(f"no message {message_id}")
    click.echo(json.dumps(found, indent=2))


@main.command()
def up() -> None:
    """Run everything: Redis (embedded unless DLRQ_REDIS_URL is set), the ingest and one worker. Ctrl-C stops all."""
    from .embedded import embedded_server

    settings = load_settings()
    setup_logging(settings)
    log = logging.getLogger("dlrq.up")
    if settings.redis_url:
        run_services(settings.redis_url, log)
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with embedded_server(settings.data_dir) as url:
        log.info("embedded Valkey at %s, data in %s", url, settings.data_dir.resolve())
        run_services(url, log)


def run_services(redis_url: str, log: logging.Logger) -> None:
    env = {**os.environ, "DLRQ_REDIS_URL": redis_url}
    # Own sessions: Ctrl-C reaches only this process, which asks each child to stop exactly once.
    children = [
        subprocess.Popen([sys.executable, "-m", "workers", command], env=env, start_new_session=True)
        for command in ("ingest", "worker")
    ]

    def stop(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while all(child.poll() is None for child in children):
            try:
                children[0].wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
        stop(signal.SIGTERM, None)
        for child in children:
            child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    failed = [c.args[-1] for c in children if c.returncode not in (0, -signal.SIGTERM, -signal.SIGINT)]
    if failed:
        raise click.ClickException(f"{', '.join(failed)} exited with an error")
    log.info("stopped")
