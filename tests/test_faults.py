"""The fault-injection suite's short version (the full one: `python -m tests.faults --full --runs 3`)."""

from __future__ import annotations

import pytest

from .faults.plan import SHORT
from .faults.run import run_once

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_nothing_acknowledged_is_lost_and_every_event_is_delivered_once_under_faults():
    report = run_once(SHORT, seed=2026)
    print(report.render())
    assert report.planned > 5000 and report.acknowledged >= report.planned, report.render()
    assert report.planned_statuses > 300, "Messages API status callbacks are part of the load"
    assert report.answers["503"] > 0 and report.answers["refused"] > 0, "the faults were felt"
    assert report.ok, report.render()
