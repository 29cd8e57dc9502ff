"""The HTTP edge of dlrq: parse, verify, store, acknowledge."""
