"""Fault injection: real processes under a Vonage-like load while they are killed, Redis
restarts or hangs, and the handler endpoint fails; then an oracle checks the outcome.

The cluster is a Valkey server with its append-only file (`appendfsync always`), one ingest,
several workers, and a webhook receiver, all supervised as compose would (`restart:
unless-stopped`). The sender behaves like Vonage: it resends every receipt until it gets a
2xx, with backoff, so a receipt that was not acknowledged is never given up on.

    python -m tests.faults --full --runs 3   # by hand: the full suite, three runs in a row
    pytest tests/test_faults.py              # the short version, in CI
"""
