"""dlrq: Vonage SMS delivery receipts, acknowledged at once, processed reliably in RQ workers.

`dlrq.core` holds what both wings share (settings, keys, the receipt, the status rules,
the message store); `ingest` is the HTTP edge, `workers` everything after the queue, and
`dlrq.cli` the command line and operator tools above them.
"""
