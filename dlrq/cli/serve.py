"""`dlrq ingest`, `dlrq api` and `dlrq worker`: the long-running processes."""

from __future__ import annotations

import logging
import os
import signal
import sys

import click
from starlette.applications import Starlette

from dlrq.core.settings import Settings

from .common import check_accounts, check_handlers, load_settings, setup_logging


def process_app() -> Starlette:
    """The app of one ingest process: `--processes N` starts N interpreters, each building its own
    (its own group commit and Redis connections) from the environment."""
    from ingest.app import create_app

    settings = load_settings()
    setup_logging(settings)
    return create_app(settings)


def api_app() -> Starlette:
    from ingest.api import create_api

    settings = load_settings()
    setup_logging(settings)
    return create_api(settings)


def serve(factory: str, settings: Settings, host: str, port: int, processes: int | None) -> None:
    """Run an app with uvicorn, as the ingest and the api both are."""
    import uvicorn

    # The processes read their settings from the environment: the server `dlrq up` runs too.
    os.environ["DLRQ_REDIS_URL"] = settings.effective_redis_url
    # Uvicorn stops accepting on SIGTERM/SIGINT, answers the requests it holds, stores every
    # batch begun (lifespan shutdown), then raises the signal again. By then stopping is
    # clean, so that second signal is let pass and the exit status is 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    uvicorn.run(
        factory,
        factory=True,
        workers=processes if processes and processes > 1 else None,
        host=host,
        port=port,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="ingest.protocol:GuardedHttp",
        # Requests still unanswered this long after a stop was asked for are cut off (their
        # receipts were not acknowledged: Vonage sends them again).
        timeout_graceful_shutdown=settings.shutdown_grace,
        # The access log would print query strings, and GET receipts carry phone numbers in them.
        access_log=False,
        log_level=settings.log_level.lower(),
        # Uvicorn's own lines go through the handler set up by the caller (JSON or text).
        log_config=None,
        lifespan="on",
    )


@click.command()
@click.option("--processes", type=click.IntRange(min=1), default=None,
              help="Serve the port from this many processes (default DLRQ_INGEST_PROCESSES, 1).")
def ingest(processes: int | None) -> None:
    """Serve the webhooks and POST /messages (DLRQ_HOST:DLRQ_PORT)."""
    settings = load_settings()
    setup_logging(settings)
    check_accounts(settings)
    serve("dlrq.cli.serve:process_app", settings, settings.host, settings.port, processes or settings.ingest_processes)
    logging.getLogger("dlrq.ingest").info("stopped: every acknowledged receipt is stored")


@click.command()
def api() -> None:
    """Serve the management routes and the console (DLRQ_API_HOST:DLRQ_API_PORT)."""
    settings = load_settings()
    setup_logging(settings)
    serve("dlrq.cli.serve:api_app", settings, settings.api_host, settings.api_port, None)
    logging.getLogger("dlrq.api").info("stopped")


@click.command()
@click.option("--burst", is_flag=True, help="Quit once the queue is empty.")
@click.option("--name", default=None, help="Worker name (default: RQ's random one).")
def worker(burst: bool, name: str | None) -> None:
    """Apply queued receipt batches and call the handlers (an RQ SimpleWorker with the scheduler)."""
    from workers.worker import run_worker

    settings = load_settings()
    setup_logging(settings)
    check_handlers(settings)
    run_worker(settings, burst=burst, name=name)
