"""Everything after the queue: apply receipts to message state, run dlrq."""
