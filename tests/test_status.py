import itertools

from dlrq.core.status import chronological, deciding_receipt, message_status, part_status
from tests.support.receipts import receipt


def test_highest_rank_wins_whatever_the_order():
    receipts = [receipt("m", "accepted", 1), receipt("m", "buffered", 2), receipt("m", "delivered", 3)]
    for order in itertools.permutations(receipts):
        assert part_status(list(order)) == "delivered"


def test_late_accepted_never_undoes_delivered():
    assert part_status([receipt("m", "delivered", 5), receipt("m", "accepted", 9)]) == "delivered"


def test_equal_rank_later_event_wins_then_scts_then_arrival():
    failed_first = [receipt("m", "failed", 1, "2"), receipt("m", "delivered", 2)]
    assert part_status(failed_first) == "delivered"
    assert part_status(failed_first[::-1]) == "delivered"
    same_time = [receipt("m", "delivered", 1, scts="2001011401"), receipt("m", "expired", 1, scts="2001011400")]
    assert part_status(same_time) == "delivered"
    tie = [receipt("m", "delivered", 1), receipt("m", "rejected", 1)]
    assert part_status(tie) == "rejected"
    assert part_status(tie[::-1]) == "delivered"


def test_unknown_ranks_below_final_and_above_buffered():
    assert part_status([receipt("m", "unknown", 9), receipt("m", "buffered", 1)]) == "unknown"
    assert part_status([receipt("m", "unknown", 9), receipt("m", "delivered", 1)]) == "delivered"


def test_unrecognised_words_never_decide():
    assert part_status([receipt("m", "DELIVRD", 1)]) is None
    assert part_status([receipt("m", "accepted", 1), receipt("m", "UNDELIV", 9)]) == "accepted"
    assert deciding_receipt([]) is None


def test_chronological_orders_by_event_time_then_arrival():
    history = [receipt("m", "delivered", 5), receipt("m", "accepted", 1), receipt("m", "DELIVRD", 5)]
    assert [e["status"] for e in chronological(history)] == ["accepted", "delivered", "DELIVRD"]


def test_message_status_rules():
    assert message_status(["delivered", "delivered"], 2) == "delivered"
    assert message_status(["delivered"], 2) == "pending"
    assert message_status(["delivered", "accepted"], 2) == "pending"
    assert message_status(["delivered", "unknown"], 2) == "unknown"
    assert message_status(["accepted", "expired"], 2) == "failed"
    assert message_status(["rejected"], 3) == "failed"
    assert message_status([None], 1) == "pending"
