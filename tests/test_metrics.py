"""The ingest's own counts, exposed in Prometheus' text format as prometheus-client would."""

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ingest.metrics import IngestMetrics


def samples(metrics: IngestMetrics) -> dict[tuple[str, tuple], float]:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_accepted_receipts_by_status_and_their_ack_latency_buckets():
    metrics = IngestMetrics()
    for status, seconds in (("delivered", 0.001), ("delivered", 0.004), ("DELIVRD", 0.3), ("accepted", 5.0)):
        metrics.accepted(status, seconds)
    got = samples(metrics)
    assert got[("dlrq_receipts_accepted_total", (("status", "delivered"),))] == 2
    assert got[("dlrq_receipts_accepted_total", (("status", "other"),))] == 1, "status words outside the contract"
    assert got[("dlrq_ack_seconds_bucket", (("le", "0.001"),))] == 1, "a bound counts what equals it"
    assert got[("dlrq_ack_seconds_bucket", (("le", "0.005"),))] == 2
    assert got[("dlrq_ack_seconds_bucket", (("le", "2.5"),))] == 3
    assert got[("dlrq_ack_seconds_bucket", (("le", "+Inf"),))] == 4
    assert got[("dlrq_ack_seconds_count", ())] == 4
    assert abs(got[("dlrq_ack_seconds_sum", ())] - 5.305) < 1e-9
