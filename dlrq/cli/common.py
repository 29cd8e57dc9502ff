"""What every command shares: settings (finding the server `dlrq up` runs), logging, errors."""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

import click
from pydantic import ValidationError

from dlrq.core.settings import DEFAULT_REDIS_URL, Settings, get_settings

from .embedded import running_server

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Fields the JSON lines carry besides those a call passes in `extra` (request_id, ...).
JSON_FIELDS = ["levelname", "name", "message", "process"]


def valid_settings() -> Settings:
    """The environment's settings, or a one-line reason why they cannot run."""
    try:
        return get_settings()
    except ValidationError as exc:
        problems = "; ".join((f"DLRQ_{'_'.join(map(str, e['loc'])).upper()}: " if e["loc"] else "")
                             + e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise click.ClickException(f"bad setting: {problems}") from exc


def check_handlers(settings: Settings) -> None:
    """A handler that cannot be loaded stops the command at once, not the first event an hour later."""
    from workers.handlers import resolve

    for name in dict.fromkeys((*settings.alert_handlers, *settings.retry_handlers)):
        try:
            resolve(name)
        except (ValueError, ImportError, AttributeError) as exc:
            raise click.ClickException(f"handler {name!r} cannot be loaded: {exc}") from exc


def load_settings() -> Settings:
    """The environment's settings; without DLRQ_REDIS_URL, the server `dlrq up` runs for DLRQ_DATA_DIR."""
    settings = valid_settings()
    if settings.redis_url is None:
        url = running_server(settings.data_dir)
        if url is not None:
            return settings.model_copy(update={"redis_url": url})
    return settings


def check_accounts(settings: Settings) -> None:
    """A bad DLRQ_ACCOUNTS_FILE stops the command at once, with why, rather than every ingest process."""
    from ingest.app import load_accounts

    try:
        load_accounts(settings)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def where(settings: Settings) -> str:
    """Which server a command talks to, and why that one, in words."""
    url = settings.effective_redis_url
    if os.environ.get("DLRQ_REDIS_URL"):
        return f"{url} (DLRQ_REDIS_URL)"
    if settings.redis_url is not None:
        return f"{url} (the server `dlrq up` runs for {settings.data_dir.resolve()})"
    return f"{DEFAULT_REDIS_URL} (the default: no `dlrq up` runs for {settings.data_dir.resolve()})"


def unreachable(settings: Settings, exc: Exception) -> NoReturn:
    raise click.ClickException(f"Redis unreachable at {where(settings)}: {exc}") from exc


class HideJobArguments(logging.Filter):
    """RQ logs a failing job's arguments, and an alert's arguments hold the recipient's number."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in ("arguments", "kwargs"):
            if hasattr(record, name):
                setattr(record, name, "(hidden: set DLRQ_LOG_PHONE_NUMBERS=true to see them)")
        return True


def setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if not settings.log_phone_numbers:
        handler.addFilter(HideJobArguments())
    as_json = settings.log_format == "json" or (settings.log_format == "auto" and not sys.stderr.isatty())
    if as_json:
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level", "name": "logger"},
                                           timestamp=True))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)
