"""The two HTTP processes in the test's own process: the ingest (webhooks, registrations) and the api
(what reads: messages, analytics, metrics, the console), on the same settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from starlette.testclient import TestClient

from dlrq.core.settings import Settings
from ingest.api import create_api
from ingest.app import create_app


@contextmanager
def ingest_and_api(settings: Settings, **kwargs: object) -> Iterator[tuple[TestClient, TestClient]]:
    with TestClient(create_app(settings), **kwargs) as ingest, TestClient(create_api(settings), **kwargs) as api:
        yield ingest, api
