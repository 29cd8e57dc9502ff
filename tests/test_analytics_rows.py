"""What /analytics and `dlrq report` print in a row, as an operator reads it."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from dlrq.cli import main as cli
from dlrq.core.receipt import Receipt, utc_now_iso
from dlrq.core.settings import Settings, get_settings
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
    get_settings.cache_clear()
    try:
        printed = CliRunner().invoke(cli, ["report", "--by", "client-ref"]).output
    finally:
        get_settings.cache_clear()
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


def test_costs_say_their_currency_in_the_api_the_report_and_the_console(redis_url, r, monkeypatch):
    settings = Settings(redis_url=redis_url, currency="GBP", api_token="console-token-0123456789")
    apply(r, [Receipt(receipt("GBP1", "delivered", 5, price="0.03330000"), utc_now_iso())], settings)
    with TestClient(create_api(settings)) as api:
        assert api.get("/analytics", headers={"Authorization": "Bearer console-token-0123456789"}
                       ).json()["currency"] == "GBP"
        login = api.get("/console/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)
        api.post("/console/login", data={"csrf": csrf, "token": "console-token-0123456789"})
        assert "cost (GBP)" in api.get("/console/networks").text
    monkeypatch.setenv("DLRQ_REDIS_URL", redis_url)
    monkeypatch.setenv("DLRQ_CURRENCY", "GBP")
    get_settings.cache_clear()
    try:
        assert "cost GBP" in CliRunner().invoke(cli, ["report"]).output
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(("code", "operator", "country"), [
    ("23410", "O2 UK Ltd.", "GB"), ("310260", "T-Mobile USA", "US"), ("26201", "Telekom Deutschland GmbH", "DE"),
    ("20801", "Orange France", "FR"), ("99999", None, None),
])
def test_a_networks_row_says_who_runs_it_in_the_api_the_report_and_the_console(redis_url, r, monkeypatch, code,
                                                                                 operator, country):
    settings = Settings(redis_url=redis_url, api_token="console-token-0123456789")
    apply(r, [Receipt(receipt(f"NET{code}", "delivered", 5, **{"network-code": code}), utc_now_iso())], settings)
    with TestClient(create_api(settings)) as api:
        auth = {"Authorization": "Bearer console-token-0123456789"}
        answer = api.get("/analytics", params={"by": "network"}, headers=auth)
        assert answer.status_code == 200, answer.text
        row = answer.json()["rows"][0]
        login = api.get("/console/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)
        api.post("/console/login", data={"csrf": csrf, "token": "console-token-0123456789"})
        page = api.get("/console/networks").text
    assert (row["key"], row["operator"], row["country"]) == (code, operator, country)
    if operator:
        assert f"{operator} ({country})" in page
        monkeypatch.setenv("DLRQ_REDIS_URL", redis_url)
        get_settings.cache_clear()
        try:
            assert f"{code} {operator}" in CliRunner().invoke(cli, ["report"]).output
        finally:
            get_settings.cache_clear()
