"""`dlrq show` tells what the console's timeline tells, phone numbers masked as there."""

from __future__ import annotations

import json
import time

import pytest

from dlrq.core.calls import run
from dlrq.core.events import Event
from dlrq.core.receipt import Receipt, utc_now_iso
from dlrq.core.registration import parse_send
from dlrq.core.settings import Settings
from dlrq.core.store import register
from tests.support.processes import dlrq, dlrq_env
from tests.support.receipts import receipt
from tests.support.sends import send
from workers.batch import apply
from workers.dispatch import Dispatcher

pytestmark = pytest.mark.integration


def test_show_lists_a_scheduled_retry_and_masks_the_number_unless_asked(redis_url, r):
    settings = Settings(redis_url=redis_url)
    run(r, register(parse_send(send(["SHOW1"])), settings))
    apply(r, [Receipt(receipt("SHOW1", "failed", 5, "1"), utc_now_iso())], settings)
    assert Dispatcher(r, settings).raise_event(Event("retry:SHOW1:1", "retry", {"message": "SHOW1"}, delay=300))
    shown = json.loads(dlrq(dlrq_env(redis_url), "show", "SHOW1").stdout)
    assert shown["to"] == "**********00", "masked as in the console and the logs"
    assert [(e["id"], e["kind"]) for e in shown["events"]] == [("retry:SHOW1:1", "retry")]
    assert shown["events"][0]["raised_at"].startswith(time.strftime("%Y-%m-%dT", time.gmtime())), "when, as the console"
    assert [c["status"] for c in shown["events"][0]["calls"]] == ["scheduled"]
    whole = json.loads(dlrq(dlrq_env(redis_url), "show", "SHOW1", "--numbers").stdout)
    assert whole["to"] == "447700900000"
    assert {k: v for k, v in whole.items() if k != "events"} == {k: v for k, v in shown.items() if k not in ("events", "to")} | {"to": "447700900000"}
