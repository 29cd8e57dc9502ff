"""The failover fault suite's short version (the full one: `python -m tests.faults --failover --full --runs 3`)."""

from __future__ import annotations

import pytest

from .faults.plan import FAILOVER_SHORT
from .faults.run import run_once

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_nothing_acknowledged_is_lost_through_failovers():
    report = run_once(FAILOVER_SHORT, seed=2027, edition="failover")
    print(report.render())
    assert report.planned > 5000 and report.acknowledged >= report.planned, report.render()
    assert report.answers["503"] > 0, "the failovers were felt"
    assert max(report.acknowledged_after["primary SIGKILL"]) < 10, report.render()
    assert report.ok, report.render()
