"""What /analytics and `dlrq report` print in a row, as an operator reads it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from dlrq.cli import main as cli
from dlrq.core.receipt import Receipt, utc_now_iso
from dlrq.core.settings import Settings
from ingest.api import create_api
from tests.support.receipts import receipt
from workers.batch import apply

pytestmark = pytest.mark.integration


def test_costs_are_written_as_amounts_zero_and_the_smallest_included(redis_url, r, monkeypatch):
    settings = Settings(redis_url=redis_url)
    apply(r, [Receipt(receipt("FREE1", "delivered", 5, price="0", **{"client-ref": "free"}), utc_now_iso()),
              Receipt(receipt("TINY1", "delivered", 5, price="0.00000001", **{"client-ref": "tiny"}), utc_now_iso()),
              Receipt(receipt("PAID1", "delivered", 5, price="0.03330000", **{"client-ref": "paid"}), utc_now_iso())],
          settings)
    with TestClient(create_api(settings)) as api:
        rows = {row["key"]: row["cost"] for row in api.get("/analytics", params={"by": "client_ref"}).json()["rows"]}
    assert rows == {"free": "0.00000000", "tiny": "0.00000001", "paid": "0.03330000"}
    monkeypatch.setenv("DLRQ_REDIS_URL", redis_url)
    printed = CliRunner().invoke(cli, ["report", "--by", "client-ref"]).output
    assert "0E-" not in printed and "0.00000000" in printed, printed


def test_a_span_ending_in_this_hour_says_it_covers_up_to_now_not_the_hours_end(redis_url, r):
    settings = Settings(redis_url=redis_url)
    with TestClient(create_api(settings)) as api:
        answer = api.get("/analytics", params={"since": "-1h"}).json()
    since, until = (datetime.fromisoformat(answer[k].replace("Z", "+00:00")) for k in ("since", "until"))
    now = datetime.now(timezone.utc)
    assert since == (now - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0), "from the start of its hour"
    assert until <= now, f"until {answer['until']} is in the future"
    assert (now - until).total_seconds() < 60
