"""Record, export, wipe, replay: the same states; replaying again changes nothing and calls no handler."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from dlrq.core import keys, record
from dlrq.core.settings import Settings, get_settings
from tests.support.apps import ingest_and_api
from tests.support.probe import CALLS
from tests.support.processes import dlrq, dlrq_env
from tests.support.queues import drain

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).parent / "fixtures"
PATH = "/webhooks/delivery-receipt"


def lines(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


def probe_env(redis_url: str) -> dict[str, str]:
    return dlrq_env(redis_url, DLRQ_ALERT_HANDLERS="tests.support.probe:record",
                    DLRQ_RETRY_HANDLERS="tests.support.probe:record")


@pytest.fixture
def probe_settings(redis_url, monkeypatch):
    """The in-process worker reads its handlers from the environment, as `dlrq worker` does."""
    monkeypatch.setenv("DLRQ_ALERT_HANDLERS", "tests.support.probe:record")
    monkeypatch.setenv("DLRQ_RETRY_HANDLERS", "tests.support.probe:record")
    monkeypatch.setenv("DLRQ_REDIS_URL", redis_url)
    get_settings.cache_clear()
    yield Settings(redis_url=redis_url)
    get_settings.cache_clear()


def ids() -> list[str]:
    found = []
    for line in lines("receipts.jsonl"):
        params = line.get("params", line)
        found.append(params["messageId"])
    return sorted(set(found))


def states(client: TestClient) -> dict[str, dict]:
    """Every message's view, without when its alerts were raised (a replay raises them anew)."""
    views = {}
    for message_id in ids():
        view = client.get(f"/messages/{message_id}").json()
        view["alerts"] = [{k: v for k, v in a.items() if k != "raised_at"} for a in view["alerts"]]
        views[message_id] = view
    return views


def register_sends(client: TestClient) -> None:
    for body in lines("sends.jsonl"):
        assert client.post("/messages", json=body).status_code in (200, 201)


def handler_calls(r) -> int:
    return r.llen(CALLS)


def test_export_wipe_replay_gives_the_same_states_and_a_second_replay_changes_nothing(
    redis_url, r, probe_settings, tmp_path
):
    with ingest_and_api(probe_settings) as (client, api):
        register_sends(client)
        for line in lines("receipts.jsonl"):
            params = line.get("params", line)
            assert client.post(PATH, json=params).status_code == 204
        drain(probe_settings)
        drain(probe_settings)  # the handler calls the first pass queued
        before = states(api)
        calls_before = handler_calls(r)
        assert calls_before > 0, "the corpus's failures called the handler"
        assert before["FIX0001B"]["status"] == "delivered" and before["FIX0004A"]["status"] == "failed"

        exported = tmp_path / "record.jsonl.gz"
        result = dlrq(probe_env(redis_url), "export", "-o", str(exported))
        assert "exported 15 receipts" in result.stderr
        recorded = [json.loads(line) for line in gzip.open(exported, "rt")]
        assert [rec["params"]["messageId"] for rec in recorded] == [
            line.get("params", line)["messageId"] for line in lines("receipts.jsonl")]
        assert all(rec["received_at"].endswith("Z") for rec in recorded)

        r.flushdb()
        register_sends(client)  # registrations are the sender's, not part of the record
        result = dlrq(probe_env(redis_url), "replay", str(exported))
        assert result.stdout.strip() == "sent 15, accepted 15, refused 0, failed 0"
        drain(probe_settings)
        drain(probe_settings)
        assert states(api) == before
        calls_after_rebuild = handler_calls(r)
        assert r.xlen(keys.RECORD) == 0, "replayed receipts are not recorded again"

        result = dlrq(probe_env(redis_url), "replay", str(exported))
        drain(probe_settings)
        drain(probe_settings)
        assert states(api) == before
        assert handler_calls(r) == calls_after_rebuild, "a second replay called a handler"


def test_replay_reports_bad_lines_with_their_numbers_and_keeps_the_good_ones(redis_url, r, settings):
    result = dlrq(probe_env(redis_url), "replay", str(FIXTURES / "broken.jsonl"), check=False)
    assert result.returncode == 1 and result.stderr.splitlines()[-1] == "Error: 3 lines were refused"
    assert result.stdout.strip() == (
        "sent 2, accepted 2, refused 3 (bad_json 1, missing_field 1, not_an_object 1), failed 0")
    assert "broken.jsonl:2: refused (bad_json)" in result.stderr
    assert "broken.jsonl:3: refused (missing_field)" in result.stderr
    assert "broken.jsonl:4: refused (not_an_object)" in result.stderr
    drain(settings)
    assert r.exists(keys.part("BRK1")) and r.exists(keys.part("BRK4"))


def test_replay_fails_loudly_when_redis_is_down(tmp_path):
    result = dlrq(probe_env("redis://127.0.0.1:1/0"), "replay", str(FIXTURES / "receipts.jsonl"), check=False)
    assert result.returncode == 1 and "failed 15" in result.stdout


def test_replay_over_http_goes_through_the_webhook(redis_url, r, ingest_server, settings):
    result = dlrq(probe_env(redis_url), "replay", "--to", f"{ingest_server}{PATH}", "--rate", "200",
                  str(FIXTURES / "broken.jsonl"), str(FIXTURES / "receipts.jsonl"), check=False)
    assert result.returncode == 1
    assert result.stdout.strip() == (
        "sent 18, accepted 17, refused 3 (bad_json 1, missing_field 1, not_an_object 1), failed 0")
    drain(settings)
    assert r.exists(keys.part("FIX0006"))
    assert sum(len(record.lines(fields)) for _, fields in r.xrange(keys.RECORD)) == 17


def test_export_since(redis_url, r, tmp_path):
    r.xadd(keys.RECORD, {"r": '{"received_at": "x", "params": {}}'}, id="1000-0")
    r.xadd(keys.RECORD, {"r": '{"received_at": "y", "params": {}}'}, id="5000-0")
    out = tmp_path / "since.jsonl"
    dlrq(probe_env(redis_url), "export", "-o", str(out), "--since", "3")
    assert [json.loads(line)["received_at"] for line in out.read_text().splitlines()] == ["y"]
    dlrq(probe_env(redis_url), "export", "-o", str(out), "--since", "1970-01-01T00:00:00Z")
    assert len(out.read_text().splitlines()) == 2


def test_export_since_takes_a_relative_time_as_report_does(redis_url, r, tmp_path):
    now_ms = int(time.time() * 1000)
    r.xadd(keys.RECORD, {"r": '{"received_at": "old", "params": {}}'}, id=f"{now_ms - 2 * 3_600_000}-0")
    r.xadd(keys.RECORD, {"r": '{"received_at": "new", "params": {}}'}, id=f"{now_ms - 60_000}-0")
    out = tmp_path / "since.jsonl"
    dlrq(probe_env(redis_url), "export", "-o", str(out), "--since", "-1h")
    assert [json.loads(line)["received_at"] for line in out.read_text().splitlines()] == ["new"]
    dlrq(probe_env(redis_url), "export", "-o", str(out), "--since", "-1d")
    assert len(out.read_text().splitlines()) == 2
    refused = dlrq(probe_env(redis_url), "export", "--since", "yesterday", check=False)
    assert refused.returncode == 2 and "relative as -1h" in refused.stderr


def test_replay_to_a_host_sends_to_its_webhook_and_a_wrong_path_says_what_to_give(redis_url, r, ingest_server,
                                                                                   settings):
    sent = dlrq(probe_env(redis_url), "replay", "--to", ingest_server, str(FIXTURES / "receipts.jsonl"))
    assert f"sending to {ingest_server}{PATH}" in sent.stderr
    assert sent.stdout.strip().startswith("sent 15, accepted 15, refused 0")
    wrong = dlrq(probe_env(redis_url), "replay", "--to", f"{ingest_server}/dlr", str(FIXTURES / "receipts.jsonl"),
                 check=False)
    assert wrong.returncode == 1
    assert f"--to wants the ingest's webhook URL, as http://<host>:<port>{PATH}" in wrong.stderr, wrong.stderr
