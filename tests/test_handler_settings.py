"""Handler settings are checked when a command starts, not at the first event an hour later."""

from __future__ import annotations

import pytest

from tests.support.processes import dlrq, dlrq_env

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("handlers", "missing"), [
    ({"DLRQ_ALERT_HANDLERS": "webhook"}, "the webhook handler needs DLRQ_WEBHOOK_URL and DLRQ_WEBHOOK_SECRET"),
    ({"DLRQ_RETRY_HANDLERS": "log,vonage"}, "the vonage handler needs DLRQ_VONAGE_API_KEY and DLRQ_VONAGE_API_SECRET"),
    ({"DLRQ_ALERT_HANDLERS": "no_such_module:handle"}, "handler 'no_such_module:handle' cannot be loaded"),
])
@pytest.mark.parametrize("command", ["worker", "up"])
def test_a_handler_without_what_it_needs_stops_the_command_at_once(redis_url, tmp_path, handlers, missing, command):
    env = dlrq_env(redis_url, DLRQ_DATA_DIR=str(tmp_path), **handlers)
    result = dlrq(env, command, check=False, timeout=30)
    assert result.returncode == 1, result.stderr
    assert missing in result.stderr and "Traceback" not in result.stderr, result.stderr
