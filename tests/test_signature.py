import pytest

from ingest.signature import Unauthorized, sign, signing_string, verify

# Vectors from Vonage's v3 Python SDK tests (secret "secret").
V3 = {"a": "1", "b": "2", "timestamp": "1461605396"}
V3_SIGS = {
    "md5hash": "6af838ef94998832dbfc29020b564830",
    "md5": "c15c21ced558c93a226c305f58f902f2",
    "sha1": "3e19a4e6880fdc2c1426bfd0587c98b9532f0210",
    "sha256": "a321e824b9b816be7c3f28859a31749a098713d39f613c80d455bbaffae1cd24",
}


@pytest.mark.parametrize("method", sorted(V3_SIGS))
def test_sdk_v3_vectors(method):
    assert sign(V3, "secret", method) == V3_SIGS[method]


def test_sdk_v4_vectors_replace_ampersand_and_equals():
    params = {"param1": "value&1", "param2": "value=2", "timestamp": "1234567890"}
    assert signing_string(params) == "&param1=value_1&param2=value_2&timestamp=1234567890"
    assert sign(params, "signature_secret", "md5") == "2bbf0abafb2c55e5af6231513896a2ac"
    assert sign({"param": "value", "timestamp": "1234567890"}, "signature_secret", "md5") == "655a4d0b7f064dff438defc52b012cf5"


def signed(method="sha256", now=1461605396, **params):
    params = {**V3, "timestamp": str(now), **params}
    params["sig"] = sign(params, "secret", method)
    return params


def test_verify_accepts_upper_case_and_refuses_tampering():
    params = signed()
    verify({**params, "sig": params["sig"].upper()}, ("secret",), "sha256", now=1461605396, max_skew=300)
    with pytest.raises(Unauthorized) as info:
        verify({**params, "a": "2"}, ("secret",), "sha256", now=1461605396, max_skew=300)
    assert info.value.code == "signature_invalid"


def test_verify_refuses_missing_and_stale():
    with pytest.raises(Unauthorized) as info:
        verify(dict(V3), ("secret",), "md5hash", now=1461605396, max_skew=300)
    assert info.value.code == "signature_missing"
    with pytest.raises(Unauthorized) as info:
        verify(signed(now=1000), ("secret",), "sha256", now=1000 + 301, max_skew=300)
    assert info.value.code == "signature_stale"
    verify(signed(now=1000), ("secret",), "sha256", now=1000 - 300, max_skew=300)
