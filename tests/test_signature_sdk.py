"""Signed webhooks cross-checked with Vonage's own SDKs (test dependencies only): whatever they
sign, the ingest accepts; any changed byte, a missing or a stale signature is a 401.

The HMAC methods are signed by vonage-http-client (SDK v4); md5hash, which v4 dropped, by the
v3 SDK's client."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from vonage_http_client.auth import Auth

from dlrq.core.settings import Settings
from ingest.app import create_app

pytestmark = pytest.mark.integration
PATH = "/webhooks/delivery-receipt"
SECRET = "the-signature-secret"
METHODS = ["md5hash", "md5", "sha1", "sha256", "sha512"]

text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=20)
# Free text where a receipt holds text; what the ingest checks the shape of (ids, prices, times) in that shape.
message_ids = st.from_regex(r"[A-Za-z0-9._:~-]{1,30}", fullmatch=True)
shaped = {"price": st.from_regex(r"0\.[0-9]{1,8}", fullmatch=True), "scts": st.from_regex(r"[0-9]{10}", fullmatch=True),
          "message-timestamp": st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2026, 1, 1)).map(
              lambda t: t.strftime("%Y-%m-%d %H:%M:%S"))}
extras = st.dictionaries(st.sampled_from(["msisdn", "to", "network-code", "client-ref", "api-key", "x-custom", "a&b",
                                          "c=d"]), text, max_size=8).flatmap(
    lambda free: st.fixed_dictionaries({}, optional=shaped).map(lambda more: {**free, **more}))


def sdk_signer(method: str) -> Callable[[dict], str]:
    if method != "md5hash":
        return Auth(api_key="key", api_secret="secret", signature_secret=SECRET, signature_method=method).sign_params
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import vonage

        return vonage.Client(key="key", secret="secret", signature_secret=SECRET).signature


@pytest.fixture(params=METHODS)
def signed(request, redis_url, r):
    settings = Settings(redis_url=redis_url, signature_secret=SECRET, signature_method=request.param)
    with TestClient(create_app(settings)) as client:
        yield client, sdk_signer(request.param), r


def sign(signer: Callable[[dict], str], params: dict, timestamp: int) -> dict:
    params = {**params, "timestamp": str(timestamp)}
    return {**params, "sig": signer(dict(params))}


def stored(r) -> int:
    return sum(1 for key in r.scan_iter("rq:job:*"))


def test_sdk_signed_receipts_pass_and_any_change_is_refused(signed):
    client, signer, r = signed
    accepted = 0

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(message_id=message_ids, status=st.sampled_from(["delivered", "accepted", "failed", "a&b=c"]),
           extra=extras, how=st.sampled_from(["json", "form", "query"]), flip=st.integers(0, 10_000))
    def check(message_id, status, extra, how, flip):
        nonlocal accepted
        params = sign(signer, {**extra, "messageId": message_id, "status": status, "err-code": "0"}, int(time.time()))

        def post(p):
            if how == "json":
                return client.post(PATH, json=p)
            if how == "form":
                return client.post(PATH, data=p)
            return client.get(PATH, params=p)

        before = stored(r)
        assert post(params).status_code == 204, params
        accepted += 1
        assert post({**params, "sig": params["sig"].upper()}).status_code == 204, "case-insensitive"
        accepted += 1
        assert stored(r) == before + 2

        # Change one character of one signed value (or of the signature itself).
        names = sorted(k for k in params if k != "timestamp")
        name = names[flip % len(names)]
        value = params[name]
        position = flip % len(value) if value else 0
        changed = value[:position] + ("x" if value[position:position + 1] != "x" else "y") + value[position + 1:]
        for forged in ({**params, name: changed}, {k: v for k, v in params.items() if k != "sig"},
                       sign(signer, {k: v for k, v in params.items() if k not in ("sig", "timestamp")},
                            int(time.time()) - 3600)):
            response = post(forged)
            assert response.status_code == 401, (name, forged)
            assert response.json()["error"].startswith("signature_")
        assert stored(r) == before + 2, "nothing refused is stored"

    check()
    assert accepted >= 100
