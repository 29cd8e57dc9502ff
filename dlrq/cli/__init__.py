"""The `dlrq` command line: one command per operator task, above the ingest and the workers."""

from __future__ import annotations

import click

from .failed import failed
from .messages import register_command, show
from .record import export, replay
from .report import report
from .serve import api, ingest, worker
from .stats import stats
from .up import up


@click.group()
@click.version_option(package_name="dlrq", prog_name="dlrq")
def main() -> None:
    """dlrq: Vonage SMS delivery receipts, acknowledged at once, processed reliably."""


for command in (up, ingest, api, worker, show, register_command, stats, report, failed, export, replay):
    main.add_command(command)
