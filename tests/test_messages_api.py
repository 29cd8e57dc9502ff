"""Messages API status callbacks and accounts: signed with PyJWT, checked against Vonage's own
`vonage-jwt`; then the contract's rules for them, through the real queue and worker."""

from __future__ import annotations

import gzip
import hashlib
import json
import time

import pytest
import vonage_jwt
from starlette.testclient import TestClient

from dlrq.core import keys, messages_api, record
from dlrq.core.accounts import parse_accounts
from dlrq.core.receipt import InvalidReceipt
from dlrq.core.settings import Settings, get_settings
from ingest.app import create_app
from ingest.signature import sign
from tests.support.apps import ingest_and_api
from tests.support.messages import DELIVERED, REJECTED, SUBMITTED, body, token
from tests.support.probe import CALLS
from tests.support.processes import dlrq, dlrq_env
from tests.support.queues import drain, queue_of
from tests.support.receipts import DOCS_DELIVERED

MESSAGE_PATH = "/webhooks/message-status"
SMS_PATH = "/webhooks/delivery-receipt"
UUID = SUBMITTED["message_uuid"]
# Two accounts with different SMS signature methods; the first is rotating its secret.
KEY_A, KEY_B = "7c47b66b", "a1b2c3d4"
NEW_A, OLD_A, SECRET_B = "new-secret-of-a-0123456789abcdefgh", "old-secret-of-a-0123456789abcdefgh", "b" * 40
ACCOUNTS = f"""
[accounts.{KEY_A}]
signature_method = "md5hash"
signature_secrets = ["{NEW_A}", "{OLD_A}"]

[accounts.{KEY_B}]
signature_method = "sha256"
signature_secrets = ["{SECRET_B}"]
"""


# --- the mapping (pure) ---------------------------------------------------------------------------

def test_a_status_callback_becomes_receipt_parameters():
    assert messages_api.to_params(SUBMITTED) == {
        "messageId": UUID, "status": "accepted", "messages-status": "submitted",
        "message-timestamp": "2023-05-01 14:00:00", "msisdn": "447700900000", "to": "447700900001",
        "client-ref": "campaign-7", "channel": "sms", "network-code": "23410", "price": "0.0333",
        "currency": "EUR", "sms-count": "2",
    }
    rejected = messages_api.to_params(REJECTED)
    assert (rejected["status"], rejected["err-code"]) == ("rejected", "1360")
    assert messages_api.to_params({**REJECTED, "error": {"title": "1360"}})["err-code"] == "1360"


@pytest.mark.parametrize(("sent", "mapped"), [("submitted", "accepted"), ("delivered", "delivered"),
                                               ("read", "delivered"), ("rejected", "rejected"),
                                               ("undeliverable", "failed"), ("deleted", "deleted")])
def test_statuses_map_as_the_contract_says(sent, mapped):
    assert messages_api.to_params({**SUBMITTED, "status": sent})["status"] == mapped


def test_what_is_not_a_status_is_refused_and_what_is_odd_is_tolerated():
    for doc, code in [([], "not_an_object"), ({**SUBMITTED, "message_uuid": ""}, "missing_field"),
                      ({**SUBMITTED, "status": 3}, "malformed_field"),
                      ({**SUBMITTED, "timestamp": "yesterday"}, "malformed_field")]:
        with pytest.raises(InvalidReceipt) as refused:
            messages_api.to_params(doc)
        assert refused.value.code == code
    odd = messages_api.to_params({**SUBMITTED, "usage": "free", "destination": None, "workflow": {"x": 1},
                                  "error": {"title": "Throttled"}})
    assert "price" not in odd and "network-code" not in odd and odd["error-title"] == "Throttled"


def test_event_times_order_as_text_whatever_their_zone_and_precision():
    times = ["2023-05-01T14:00:00Z", "2023-05-01T14:00:00.250Z", "2023-05-01T16:00:00.5+02:00",
             "2023-05-01T14:00:01+00:00"]
    assert [messages_api.event_time(t) for t in times] == [
        "2023-05-01 14:00:00", "2023-05-01 14:00:00.25", "2023-05-01 14:00:00.5", "2023-05-01 14:00:01"]
    assert sorted(messages_api.event_time(t) for t in times) == [messages_api.event_time(t) for t in times]


@pytest.mark.parametrize("doc", [SUBMITTED, DELIVERED, REJECTED])
def test_a_recorded_status_gives_back_a_callback_that_reads_the_same(doc):
    params = messages_api.to_params(doc)
    assert messages_api.to_params(messages_api.to_callback(params)) == params


def test_accounts_files_are_checked():
    accounts = parse_accounts(ACCOUNTS)
    assert accounts.select(KEY_A).secrets == (NEW_A, OLD_A) and accounts.select(KEY_B).method == "sha256"
    for text, problem in [("", "no [accounts"), ("[accounts.k]\nsignature_secrets = []", "one or two"),
                          ('[accounts.k]\nsignature_secrets = ["a", "b", "c"]', "one or two"),
                          ('[accounts.k]\nsignature_method = "rot13"\nsignature_secrets = ["a"]', "rot13"),
                          ('[accounts.k]\nsecret = "a"', "unknown key"), ("[accounts", "not valid TOML")]:
        with pytest.raises(ValueError, match=problem.replace("[", r"\[")):
            parse_accounts(text)


def test_a_bad_accounts_file_stops_the_ingest_at_once_saying_why(tmp_path):
    path = tmp_path / "accounts.toml"
    path.write_text('[accounts.k]\nsignature_secrets = ["a", "b", "c"]\n')
    result = dlrq(dlrq_env(None, DLRQ_ACCOUNTS_FILE=str(path)), "ingest", check=False, timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: DLRQ_ACCOUNTS_FILE {path}: [accounts.k]: signature_secrets must list one or two non-empty secrets")
    assert NEW_A not in repr(parse_accounts(ACCOUNTS)), "no secret in a repr (it may be logged)"


# --- signatures and accounts, against a real Redis --------------------------------------------------

@pytest.fixture
def accounts_client(redis_url, tmp_path):
    path = tmp_path / "accounts.toml"
    path.write_text(ACCOUNTS)
    settings = Settings(redis_url=redis_url, accounts_file=path)
    with TestClient(create_app(settings)) as client:
        yield client, settings


def stored_ids(r, settings) -> list[str]:
    return [rec["params"]["messageId"] for job in queue_of(r, settings).get_jobs() for rec in job.args[0]]


def post_status(client, raw: bytes, jwt: str | None):
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {jwt}"} if jwt else {})
    return client.post(MESSAGE_PATH, content=raw, headers=headers)


def test_every_well_signed_callback_is_accepted_and_vonage_jwt_agrees(accounts_client, r):
    client, settings = accounts_client
    accepted = []
    for n, (secret, key) in enumerate([(NEW_A, KEY_A), (OLD_A, KEY_A), (SECRET_B, KEY_B)]):
        raw = body({**DELIVERED, "message_uuid": f"signed-{n}"})
        jwt = token(raw, secret, key)
        assert vonage_jwt.verify_signature(jwt, secret) is True
        assert post_status(client, raw, jwt).status_code == 204
        accepted.append(f"signed-{n}")
    assert stored_ids(r, settings) == accepted


def test_forged_stale_or_unsigned_callbacks_are_refused_and_nothing_is_stored(accounts_client, r):
    client, settings = accounts_client
    raw = body(DELIVERED)
    changed = raw.replace(b"23410", b"23411")
    third = "a-third-secret-nobody-was-given-0123456789"
    cases = {
        "a changed byte of the body": (changed, token(raw, NEW_A), "signature_invalid"),
        "a wrong secret": (raw, token(raw, third), "signature_invalid"),
        "alg none": (raw, token(raw, NEW_A, algorithm="none"), "signature_invalid"),
        "alg HS512": (raw, token(raw, NEW_A, algorithm="HS512"), "signature_invalid"),
        "a stale iat": (raw, token(raw, NEW_A, iat=time.time() - 301), "signature_stale"),
        "an iat from the future": (raw, token(raw, NEW_A, iat=time.time() + 301), "signature_stale"),
        "no token": (raw, None, "signature_missing"),
        "an unknown api key": (raw, token(raw, NEW_A, api_key="ffffffff"), "api_key_mismatch"),
        "another account's secret": (raw, token(raw, SECRET_B, api_key=KEY_A), "signature_invalid"),
        "a hash of the JSON re-serialised": (raw, token(raw, NEW_A, payload_hash=hashlib.sha256(
            json.dumps(json.loads(raw), separators=(",", ":")).encode()).hexdigest()), "signature_invalid"),
    }
    for case, (sent, jwt, code) in cases.items():
        answer = post_status(client, sent, jwt)
        assert (answer.status_code, answer.json()["error"]) == (401, code), case
    # Vonage's own check agrees on the signatures (it does not look at the body, iat or alg).
    assert vonage_jwt.verify_signature(token(raw, third), NEW_A) is False
    assert stored_ids(r, settings) == []


def test_sms_receipts_of_two_accounts_are_each_verified_with_their_own_method_and_secrets(accounts_client, r):
    client, settings = accounts_client

    def signed(message_id: str, key: str, secret: str, method: str) -> dict[str, str]:
        params = {**DOCS_DELIVERED, "messageId": message_id, "api-key": key, "timestamp": str(int(time.time()))}
        return {**params, "sig": sign(params, secret, method)}

    good = [signed("A-NEW", KEY_A, NEW_A, "md5hash"), signed("A-OLD", KEY_A, OLD_A, "md5hash"),
            signed("B", KEY_B, SECRET_B, "sha256")]
    for params in good:
        assert client.post(SMS_PATH, data=params).status_code == 204
    bad = {"a third secret": (signed("A-3", KEY_A, "x" * 40, "md5hash"), "signature_invalid"),
           "A's method for B": (signed("B-MD5", KEY_B, SECRET_B, "md5hash"), "signature_invalid"),
           "B's secret for A": (signed("A-B", KEY_A, SECRET_B, "md5hash"), "signature_invalid"),
           "an unknown key": (signed("C", "ffffffff", NEW_A, "md5hash"), "api_key_mismatch"),
           "no key": ({k: v for k, v in signed("D", KEY_A, NEW_A, "md5hash").items() if k != "api-key"},
                      "api_key_mismatch")}
    for case, (params, code) in bad.items():
        answer = client.post(SMS_PATH, data=params)
        assert (answer.status_code, answer.json()["error"]) == (401, code), case
    assert stored_ids(r, settings) == ["A-NEW", "A-OLD", "B"]


def test_the_single_secret_settings_sign_the_messages_api_too(redis_url, r):
    secret = "one-account-secret-0123456789abcdef"
    settings = Settings(redis_url=redis_url, signature_secret=secret, signature_method="sha512")
    with TestClient(create_app(settings)) as client:
        raw = body(DELIVERED)
        assert post_status(client, raw, None).json()["error"] == "signature_missing"
        assert post_status(client, raw, token(raw, secret, api_key="any")).status_code == 204
    assert stored_ids(r, settings) == [UUID]


def test_unsigned_callbacks_are_accepted_when_no_secret_is_set_and_bad_input_is_400(client, r, settings):
    assert post_status(client, body(SUBMITTED), None).status_code == 204
    answers = {
        "not JSON": client.post(MESSAGE_PATH, content=b"{", headers={"Content-Type": "application/json"}),
        "a form": client.post(MESSAGE_PATH, data={"message_uuid": "x"}),
        "no uuid": client.post(MESSAGE_PATH, json={**SUBMITTED, "message_uuid": None}),
        "GET": client.get(MESSAGE_PATH),
    }
    assert {k: (a.status_code, a.json()["error"]) for k, a in answers.items()} == {
        "not JSON": (400, "bad_json"), "a form": (415, "unsupported_media_type"),
        "no uuid": (400, "missing_field"), "GET": (405, "method_not_allowed")}
    assert answers["GET"].headers["allow"] == "POST"
    assert stored_ids(r, settings) == [UUID]


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


# --- the contract's rules, through the queue and the worker -------------------------------------------

@pytest.fixture
def probe_settings(redis_url, monkeypatch):
    for name in ("DLRQ_ALERT_HANDLERS", "DLRQ_RETRY_HANDLERS"):
        monkeypatch.setenv(name, "tests.support.probe:record,vonage")
    monkeypatch.setenv("DLRQ_RETRY_CODES", "1360")  # so that a rejected SMS raises a retry, which vonage skips
    monkeypatch.setenv("DLRQ_RETRY_BACKOFF", "0")
    monkeypatch.setenv("DLRQ_VONAGE_API_KEY", "test-key")  # the vonage handler needs them to start
    monkeypatch.setenv("DLRQ_VONAGE_API_SECRET", "test-secret")
    monkeypatch.setenv("DLRQ_REDIS_URL", redis_url)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def settle(settings: Settings) -> None:
    drain(settings)
    drain(settings)  # the handler calls the first pass queued


def test_resends_change_nothing_and_a_late_submitted_does_not_undo_delivered(probe_settings, r):
    with ingest_and_api(probe_settings) as (client, api):
        for doc in (DELIVERED, SUBMITTED, DELIVERED, {**DELIVERED, "status": "read",
                                                      "timestamp": "2023-05-01T14:00:09Z"}):
            assert post_status(client, body(doc), None).status_code == 204
        settle(probe_settings)
        view = api.get(f"/messages/{UUID}").json()
        assert view["status"] == "delivered" and view["parts_expected"] == 1 and view["to"] == "447700900000"
        [part] = view["parts"]
        assert (part["api"], part["channel"], part["network_code"], part["price"]) == (
            "messages", "sms", "23410", "0.0333")
        assert [h["status"] for h in part["history"]] == ["accepted", "delivered", "delivered"]
        counters = r.hgetall(keys.COUNTERS)
        assert int(counters[keys.COUNT_NEW.encode()]) == 3 and int(counters[keys.COUNT_RESEND.encode()]) == 1

        report = api.get("/analytics?by=network&since=2000-01-01T00:00:00Z").json()
        [row] = report["rows"]
        assert (row["key"], row["final"], row["delivered"], row["cost"]) == ("23410", 1, 1, "0.03330000")


def test_a_rejected_message_raises_its_event_once_and_vonage_leaves_it_alone(probe_settings, r, caplog):
    with ingest_and_api(probe_settings) as (client, api):
        for doc in (SUBMITTED, REJECTED, REJECTED):
            assert post_status(client, body(doc), None).status_code == 204
        settle(probe_settings)
        assert api.get(f"/messages/{UUID}").json()["status"] == "failed"
    [call] = [json.loads(c) for c in r.lrange(CALLS, 0, -1)]
    assert (call["kind"], call["api"], call["err_code"]) == ("retry", "messages", "1360")
    assert "sent through the Messages API" in caplog.text and "not resent" in caplog.text


def test_the_record_says_which_adapter_and_replays_through_each(probe_settings, r, redis_url, tmp_path,
                                                                 ingest_server):
    with TestClient(create_app(probe_settings)) as client:
        assert post_status(client, body(SUBMITTED), None).status_code == 204
        assert client.post(SMS_PATH, json=DOCS_DELIVERED).status_code == 204
    exported = tmp_path / "record.jsonl.gz"
    dlrq(dlrq_env(redis_url), "export", "-o", str(exported))
    lines = [json.loads(line) for line in gzip.open(exported, "rt")]
    assert [line.get("adapter") for line in lines] == ["messages", None]
    assert lines[0]["params"]["messages-status"] == "submitted"

    r.flushdb()
    result = dlrq(dlrq_env(redis_url), "replay", "--to", f"{ingest_server}{SMS_PATH}", str(exported))
    assert result.stdout.strip() == "sent 2, accepted 2, refused 0, failed 0"
    records = [json.loads(line) for _, fields in r.xrange(keys.RECORD) for line in record.lines(fields)]
    assert sorted((rec.get("adapter", "sms"), rec["params"]["messageId"]) for rec in records) == [
        ("messages", UUID), ("sms", DOCS_DELIVERED["messageId"])]
