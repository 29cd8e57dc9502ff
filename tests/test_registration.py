import pytest

from dlrq.core.registration import InvalidSend, parse_send
from tests.support.sends import DOCS_TWO_PARTS, send


def test_docs_send_response_is_two_parts_of_one_message():
    parsed = parse_send(DOCS_TWO_PARTS)
    assert parsed.id == "0A0000000123ABCD1"
    assert parsed.part_ids == ["0A0000000123ABCD1", "0A0000000123ABCD2"]
    assert [p.index for p in parsed.parts] == [0, 1]
    assert parsed.client_ref == "my-personal-reference" and parsed.to == "447700900000"
    assert parsed.retry_of is None


def test_a_part_refused_at_send_time_is_kept_as_never_submitted():
    parsed = parse_send(send(["P1", "P2"], ["0", "1"]))
    assert parsed.part_ids == ["P1"]
    assert [p.submitted for p in parsed.parts] == [True, False]


def test_text_from_and_retry_of_are_kept():
    parsed = parse_send(send(["P1"], text="hello", **{"from": "ACME", "retry_of": "OLD"}))
    assert (parsed.text, parsed.sender, parsed.retry_of) == ("hello", "ACME", "OLD")


@pytest.mark.parametrize(
    "body, code",
    [
        ([], "not_an_object"),
        ({}, "missing_field"),
        ({"messages": []}, "missing_field"),
        ({"messages": ["x"]}, "malformed_field"),
        ({"messages": [{"message-id": "A"}]}, "missing_field"),
        ({"messages": [{"status": "0"}]}, "missing_field"),
        ({"messages": [{"status": "1", "error-text": "Throttled"}]}, "missing_field"),
        ({"message-count": "3", "messages": [{"status": "0", "message-id": "A"}]}, "malformed_field"),
        ({"messages": [{"status": "0", "message-id": "A"}, {"status": "0", "message-id": "A"}]}, "malformed_field"),
        ({"messages": [{"status": "0", "message-id": ["A"]}]}, "malformed_field"),
    ],
)
def test_what_cannot_be_correlated_is_refused(body, code):
    with pytest.raises(InvalidSend) as refused:
        parse_send(body)
    assert refused.value.code == code and refused.value.http_status == 400
