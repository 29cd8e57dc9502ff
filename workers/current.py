"""The settings of the worker running the current job.

RQ calls a job function with the job's arguments only; a worker built with explicit
Settings must still apply its jobs with those, not with the environment's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from dlrq.core.settings import Settings, get_settings

_settings: ContextVar[Settings | None] = ContextVar("dlrq_worker_settings", default=None)


def settings() -> Settings:
    """The running worker's settings; the environment's when RQ's own worker runs the job."""
    return _settings.get() or get_settings()


@contextmanager
def using(worker_settings: Settings) -> Iterator[None]:
    token = _settings.set(worker_settings)
    try:
        yield
    finally:
        _settings.reset(token)
