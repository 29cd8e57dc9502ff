"""`dlrq failed`: jobs that ran out of retries (receipt batches and handler calls)."""

from __future__ import annotations

import click
from redis.exceptions import RedisError

from dlrq.core import connect
from dlrq.core import failed as registry

from .common import load_settings, unreachable, where


@click.group()
def failed() -> None:
    """Jobs that ran out of retries: receipt batches and handler calls."""


@failed.command("list")
def failed_list() -> None:
    """One line per failed job, newest first: queue, job id, what it was, why it failed."""
    settings = load_settings()
    try:
        with connect.client(settings) as client:
            jobs = registry.list_failed(client, settings.queues)
    except RedisError as exc:
        unreachable(settings, exc)
    for job in jobs:
        click.echo(f"{job.queue}\t{job.id}\t{job.description}\t{job.reason}")
    if not jobs:
        click.echo(f"no failed jobs on {where(settings)}", err=True)


@failed.command("requeue")
@click.argument("job_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Requeue every failed job.")
def failed_requeue(job_ids: tuple[str, ...], everything: bool) -> None:
    """Put failed jobs back on their queue (after fixing what made them fail)."""
    if not job_ids and not everything:
        raise click.UsageError("name job ids, or --all")
    settings = load_settings()
    try:
        with connect.client(settings) as client:
            count = registry.requeue(client, settings.queues, None if everything else set(job_ids))
    except RedisError as exc:
        unreachable(settings, exc)
    click.echo(f"requeued {count} job(s)")


@failed.command("purge")
@click.option("--yes", is_flag=True, help="Do not ask.")
def failed_purge(yes: bool) -> None:
    """Delete every failed job."""
    settings = load_settings()
    try:
        with connect.client(settings) as client:
            total = registry.count(client, settings.queues)
            if total and not yes:
                click.confirm(f"delete {total} failed job(s)?", abort=True)
            deleted = registry.purge(client, settings.queues)
    except RedisError as exc:
        unreachable(settings, exc)
    click.echo(f"deleted {deleted} job(s)")
