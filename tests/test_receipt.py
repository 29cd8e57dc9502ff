import pytest

from dlrq.core.receipt import InvalidReceipt, Receipt, dedupe_key, history_entry, stringify, validate
from tests.support.receipts import DOCS_DELIVERED, DOCS_TUTORIAL


def test_documented_receipts_are_valid():
    assert validate(dict(DOCS_DELIVERED)) == DOCS_DELIVERED
    assert validate(dict(DOCS_TUTORIAL)) == DOCS_TUTORIAL


@pytest.mark.parametrize("missing", ["messageId", "status"])
def test_required_fields(missing):
    params = {**DOCS_DELIVERED, missing: ""}
    with pytest.raises(InvalidReceipt) as info:
        validate(params)
    assert info.value.code == "missing_field" and missing in info.value.detail
    del params[missing]
    with pytest.raises(InvalidReceipt):
        validate(params)


@pytest.mark.parametrize("err_code", ["", "x", "-1", "1.0", "٣"])
def test_err_code_must_be_digits(err_code):
    with pytest.raises(InvalidReceipt) as info:
        validate({**DOCS_DELIVERED, "err-code": err_code})
    assert info.value.code == "malformed_field"


def test_unknown_fields_are_kept():
    params = validate({**DOCS_DELIVERED, "x-custom": "kept"})
    assert params["x-custom"] == "kept"


def test_stringify_keeps_strings_and_refuses_nesting():
    assert stringify({"a": "1", "b": 2, "c": True}) == {"a": "1", "b": "2", "c": "true"}
    for bad in ({"a": {"b": "c"}}, {"a": ["b"]}, {"a": None}):
        with pytest.raises(InvalidReceipt):
            stringify(bad)
    with pytest.raises(InvalidReceipt) as info:
        stringify({"a": "\ud800"})
    assert info.value.code == "bad_encoding"


def test_resend_identity_ignores_signature_fields():
    resend = {**DOCS_DELIVERED, "timestamp": "1", "nonce": "n", "sig": "s", "price": "0.04"}
    assert dedupe_key(resend) == dedupe_key(DOCS_DELIVERED)
    assert dedupe_key({**DOCS_DELIVERED, "scts": "1810251311"}) != dedupe_key(DOCS_DELIVERED)


def test_history_entry_drops_transport_fields():
    entry = history_entry(Receipt({**DOCS_TUTORIAL, "sig": "s", "nonce": "n", "timestamp": "1"}, "2020-01-01T00:00:00.000Z"))
    assert "sig" not in entry and "api-key" not in entry and "messageId" not in entry
    assert entry["status"] == "delivered" and entry["received_at"] == "2020-01-01T00:00:00.000Z"


def test_record_round_trip():
    r = Receipt(dict(DOCS_DELIVERED), "2020-01-01T00:00:00.000Z")
    assert Receipt.from_record(r.to_record()) == r
    with pytest.raises(InvalidReceipt):
        Receipt.from_record({"params": {"status": "delivered"}, "received_at": "x"})
    with pytest.raises(InvalidReceipt):
        Receipt.from_record(["not", "a", "record"])
