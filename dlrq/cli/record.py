"""`dlrq export` and `dlrq replay`: the record of accepted receipts, out to files and back."""

from __future__ import annotations

import asyncio
import gzip
import io
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

import click
import httpx
import redis
from redis.exceptions import RedisError

from dlrq.core import connect, keys, record, times
from dlrq.core.receipt import MESSAGES, SMS

from .common import load_settings, unreachable, where
from .replay import Summary

EXPORT_CHUNK = 1000


def parse_since(text: str) -> int:
    """A time as times.moment reads it, as a stream id's milliseconds."""
    return int(times.moment(text, datetime.now(timezone.utc)).timestamp() * 1000)


def read_record(client: redis.Redis, since_ms: int = 0) -> Iterator[bytes]:
    """Every recorded receipt since `since_ms` as a JSON line, oldest first, a chunk of batches at a time."""
    start = f"{since_ms}-0"
    while True:
        entries = client.xrange(keys.RECORD, min=start, max="+", count=EXPORT_CHUNK)
        for _, fields in entries:
            yield from record.lines(fields)
        if len(entries) < EXPORT_CHUNK:
            return
        start = "(" + entries[-1][0].decode()


def open_output(path: Path | None) -> IO[bytes]:
    if path is None:
        return io.BufferedWriter(io.FileIO(1, "w", closefd=False))
    return gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb")  # noqa: SIM115


def write_record(client: redis.Redis, out: IO[bytes], since_ms: int = 0) -> int:
    """Write the record as JSONL; return how many receipts were written."""
    count = 0
    for line in read_record(client, since_ms):
        out.write(line + b"\n")
        count += 1
    return count


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here (gzip when the name ends in .gz) instead of stdout.")
@click.option("--since", default=None,
              help="Only receipts recorded since this time (ISO 8601, epoch seconds, or relative: -1h, -7d).")
def export(output: Path | None, since: str | None) -> None:
    """Stream the record of accepted receipts as JSONL, oldest first."""
    settings = load_settings()
    try:
        since_ms = parse_since(since) if since else 0
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc
    try:
        with connect.client(settings) as client, open_output(output) as out:
            count = write_record(client, out, since_ms)
    except RedisError as exc:
        unreachable(settings, exc)
    click.echo(f"exported {count} receipts from {where(settings)}", err=True)


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--to", "url", default=None,
              help="POST each receipt to this webhook URL instead of the queue (a URL without a path gets "
                   "DLRQ_WEBHOOK_PATH; Messages API statuses go to DLRQ_MESSAGE_STATUS_PATH on the same host).")
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

    from ingest.enqueue import BatchEnqueuer

    from .replay import read_lines, replay_over_http, replay_to_queue, report

    settings = load_settings()
    summary = Summary()
    lines = read_lines(files, summary)
    if url and httpx.URL(url).path in ("", "/"):
        url = str(httpx.URL(url).copy_with(path=settings.webhook_path))
        click.echo(f"--to names a host, not the webhook: sending to {url}", err=True)

    async def run() -> Summary:
        with tqdm(unit=" receipts", unit_scale=True, file=sys.stderr) as bar:
            if url:
                messages_url = str(httpx.URL(url).copy_with(path=settings.message_status_path, query=None))
                urls = {SMS: url, MESSAGES: messages_url}
                return await replay_over_http(lines, urls, summary, rate, concurrency, bar.update)
            client = connect.async_client(settings)
            try:
                enqueue = BatchEnqueuer(client, settings.queue, settings.job_timeout)
                return await replay_to_queue(lines, enqueue, batch_size, summary, rate, bar.update)
            finally:
                await client.aclose()

    try:
        asyncio.run(run())
    except RedisError as exc:
        unreachable(settings, exc)
    report(summary)
    if url and (summary.refused.get("not_found") or summary.refused.get("http_404")):
        click.echo(f"{url} answered 404: --to wants the ingest's webhook URL, as "
                   f"http://<host>:<port>{settings.webhook_path}", err=True)
    click.echo(summary.line())
    if not summary.ok:
        raise click.ClickException(summary.reason() or "")
