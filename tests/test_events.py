"""The Handlers rules of the contract, as pure functions."""

from dlrq.core.events import failure_rate, message_events

CODES = ("1", "2", "7", "8", "12", "16", "99")


def view(status, attempts=1, parts=None):
    parts = parts or [{"message_id": "P1", "status": "failed", "err_code": "2", "network_code": "23410"}]
    return {"id": "M", "status": status, "attempts": attempts, "parts": parts, "to": "447700900000", "client_ref": "r"}


def events(v, max_attempts=3):
    return [(e.kind, e.id, e.delay) for e in message_events(v, CODES, max_attempts, lambda n: [300, 1800, 7200][n - 1])]


def test_a_temporary_failure_is_retried_after_the_backoff_of_its_attempt():
    assert events(view("failed", 1)) == [("retry", "retry:M:1", 300)]
    assert events(view("failed", 2)) == [("retry", "retry:M:2", 1800)]


def test_the_last_attempt_failing_for_a_temporary_reason_exhausts_the_retries():
    assert events(view("failed", 3)) == [("retries_exhausted", "retries_exhausted:M", 0)]
    assert events(view("failed", 1), max_attempts=1) == [("retries_exhausted", "retries_exhausted:M", 0)]


def test_a_permanent_code_or_a_part_refused_at_send_time_is_a_permanent_failure():
    permanent = [{"message_id": "P1", "status": "rejected", "err_code": "3"}]
    refused = [{"message_id": "P1", "status": "delivered", "err_code": "0"},
               {"message_id": None, "status": "failed", "err_code": None, "send_status": "1"}]
    assert events(view("failed", 1, permanent)) == [("permanent_failure", "permanent_failure:M:1", 0)]
    assert events(view("failed", 2, refused)) == [("permanent_failure", "permanent_failure:M:2", 0)]


def test_the_first_failed_part_decides():
    parts = [{"message_id": "P1", "status": "delivered", "err_code": "0"},
             {"message_id": "P2", "status": "expired", "err_code": "3"},
             {"message_id": "P3", "status": "failed", "err_code": "2"}]
    [event] = message_events(view("failed", 1, parts), CODES, 3, lambda n: 1)
    assert (event.kind, event.data["part"], event.data["err_code"]) == ("permanent_failure", "P2", "3")


def test_no_event_unless_the_message_failed():
    for status in ("delivered", "pending", "unknown"):
        assert events(view(status)) == []


def test_failure_rate_needs_volume_and_share():
    assert failure_rate("23410", 19, 19, 20, 0.5, 300, 1000.0) is None
    assert failure_rate("23410", 40, 19, 20, 0.5, 300, 1000.0) is None
    event = failure_rate("23410", 40, 20, 20, 0.5, 300, 1000.0)
    assert event.kind == "failure_rate" and event.data["share"] == 0.5 and event.id == "failure_rate:23410:1000"
