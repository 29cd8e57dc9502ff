"""`dlrq report`: delivery by network, country, client-ref or err-code, as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from typing import Any

import click
from redis.exceptions import RedisError

from dlrq.core import analytics, connect
from dlrq.core.calls import run
from dlrq.core.store import read_analytics

from .common import load_settings, unreachable

BY = {"network": "network", "country": "country", "client-ref": "client_ref", "err-code": "err_code"}
COLUMNS = ("key", "final", "delivered", "expired", "failed", "rejected", "unknown", "delivery_rate", "cost",
           "err_codes", "submitted", "dlr_ratio", "p50_s", "p90_s", "p99_s")


# A network's row also says who runs it, after its key.
NETWORK_COLUMNS = ("key", "operator", "country", *COLUMNS[1:])


def flat(row: dict[str, Any], columns: tuple[str, ...] = COLUMNS) -> dict[str, Any]:
    """A row with its nested figures as columns (CSV, the table)."""
    latency = row.get("latency_s") or {}
    out = {column: row.get(column) for column in columns if column not in ("p50_s", "p90_s", "p99_s")}
    out["err_codes"] = " ".join(f"{code}:{n}" for code, n in row["err_codes"].items())
    out.update({f"{p}_s": latency.get(p) for p in ("p50", "p90", "p99")})
    return out


def as_csv(found: dict[str, Any]) -> str:
    buffer = io.StringIO()
    columns = NETWORK_COLUMNS if found["by"] == "network" else COLUMNS
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in [*found["rows"], {**found["total"], "key": "(total)"}]:
        writer.writerow({k: "" if v is None else v for k, v in flat(row, columns).items()})
    return buffer.getvalue()


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.0f} min"


def as_table(found: dict[str, Any]) -> str:
    """For a person: rates as percentages, times in seconds or minutes, the commonest err-codes."""
    header = (found["by"].replace("_", "-"), "final", "delivered", "rate", "failed+", f"cost {found['currency']}",
              "top err-codes",
              "submitted", "DLR ratio", "p50", "p90")
    lines = [header]
    for row in [*found["rows"], {**found["total"], "key": "total"}]:
        latency = row.get("latency_s") or {}
        errors = sorted(row["err_codes"].items(), key=lambda item: -item[1])[:3]
        named = f"{row['key']} {row['operator']}" if row.get("operator") else str(row["key"])
        lines.append((
            named, f"{row['final']:,}", f"{row['delivered']:,}", _percent(row["delivery_rate"]),
            f"{row['expired'] + row['failed'] + row['rejected']:,}", row["cost"],
            ", ".join(f"{code}×{n}" for code, n in errors) or "–", f"{row['submitted']:,}",
            _percent(row["dlr_ratio"]), _seconds(latency.get("p50")), _seconds(latency.get("p90")),
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [f"delivery by {found['by'].replace('_', '-')}, {found['since']} to {found['until']}"]
    for n, line in enumerate(lines):
        cells = [cell.ljust(width) if i == 0 or i == 6 else cell.rjust(width)
                 for i, (cell, width) in enumerate(zip(line, widths))]
        text.append("  ".join(cells).rstrip())
        if n == 0 or n == len(lines) - 2:
            text.append("  ".join("-" * width for width in widths))
    return "\n".join(text)


@click.command()
@click.option("--by", "by", type=click.Choice(list(BY)), default="network", show_default=True)
@click.option("--since", default=None, help="ISO 8601, epoch seconds, or relative: -24h, -7d, to the start of its "
              "hour (default: 24 hours before --until).")
@click.option("--until", default=None, help="ISO 8601, epoch seconds, or relative, to the start of its hour "
              "(default: now).")
@click.option("--format", "form", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def report(by: str, since: str | None, until: str | None, form: str) -> None:
    """Delivery rates, DLR ratio, time to receipt and cost, hour by hour summed over a span."""
    settings = load_settings()
    try:
        now = datetime.now(timezone.utc)
        start, end = analytics.span(since, until, now, settings.analytics_retention)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since/--until") from exc
    try:
        with connect.client(settings) as client:
            found = run(client, read_analytics(BY[by], start, end, now))
        found["currency"] = settings.currency
    except RedisError as exc:
        unreachable(settings, exc)
    if form == "json":
        click.echo(json.dumps(found, indent=2))
    elif form == "csv":
        click.echo(as_csv(found), nl=False)
    else:
        click.echo(as_table(found))
