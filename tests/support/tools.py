"""Programs some tests drive (Debian's Chromium, Prometheus): skipped when missing, unless
DLRQ_TEST_REQUIRE_TOOLS is set (as CI does, having installed them), when missing fails."""

from __future__ import annotations

import os
import shutil

import pytest


def need(program: str) -> str:
    """The program's path; the test is skipped (or fails, in CI) without it."""
    path = shutil.which(program)
    if path is None:
        reason = f"{program} is not installed (apt-get install {program})"
        if os.environ.get("DLRQ_TEST_REQUIRE_TOOLS"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path
