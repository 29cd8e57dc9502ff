"""Group commit: receipts that arrive while a write is in flight are stored together.

One write at a time. Each request waits on a future that is resolved only when
its batch is in Redis, so an acknowledgement always means "stored". A failed
or slow write fails every request in it with StorageUnavailable (a 503 for
Vonage, which then resends), within `timeout` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from dlrq.core.receipt import Receipt, receipt_id

log = logging.getLogger("dlrq.ingest")

# Stores a batch; returns its id (the RQ job's).
Write = Callable[[list[Receipt]], Awaitable[str]]
# Told how each write went: None, or why it failed.
Outcome = Callable[[Exception | None], None]


# Loop turns without a new receipt after which a batch is written: a request takes
# a couple of turns from its bytes arriving to its receipt being submitted.
QUIET_TURNS = 3


class StorageUnavailable(Exception):
    pass


class GroupCommit:
    def __init__(self, write: Write, max_size: int, max_wait: float, timeout: float,
                 outcome: Outcome = lambda exc: None) -> None:
        self._write = write
        self._outcome = outcome
        self._max_size = max_size
        self._max_wait = max_wait
        self._timeout = timeout
        self._pending: list[tuple[Receipt, asyncio.Future[str]]] = []
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="dlrq-group-commit")

    async def submit(self, receipt: Receipt) -> str:
        """Return the receipt's id once it is durably stored; raise StorageUnavailable otherwise."""
        if self._closing:
            raise StorageUnavailable("shutting down")
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.append((receipt, future))
        self._arrived.set()
        if len(self._pending) >= self._max_size:
            self._full.set()
        return await future

    async def close(self) -> None:
        """Refuse new receipts, then store every one already taken."""
        self._closing = True
        self._arrived.set()
        if self._task is not None:
            await self._task

    def _take(self) -> list[tuple[Receipt, asyncio.Future[str]]]:
        batch, self._pending = self._pending[: self._max_size], self._pending[self._max_size :]
        if not self._pending:
            self._arrived.clear()
            self._full.clear()
        return batch

    async def _run(self) -> None:
        while not (self._closing and not self._pending):
            await self._arrived.wait()
            if self._max_wait and not self._closing and len(self._pending) < self._max_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._max_wait)
            await self._gather()
            if self._pending:
                await self._flush(self._take())

    async def _gather(self) -> None:
        """Let the loop finish the requests it is already handling, so that they share this write.

        A busy server thus writes fewer, larger batches (less CPU per receipt here, fewer jobs
        for the workers), while an idle one writes at once. Each connection has at most one
        request in flight, so this ends when every busy connection has submitted.
        """
        quiet = 0
        while quiet < QUIET_TURNS and len(self._pending) < self._max_size and not self._closing:
            before = len(self._pending)
            await asyncio.sleep(0)
            quiet = quiet + 1 if len(self._pending) == before else 0

    async def _flush(self, batch: list[tuple[Receipt, asyncio.Future[str]]]) -> None:
        try:
            batch_id = await asyncio.wait_for(self._write([receipt for receipt, _ in batch]), self._timeout)
        except Exception as exc:  # any failure to store must become a 503, never a lost ack
            log.debug("storing a batch of %d receipts failed: %s", len(batch), str(exc) or type(exc).__name__)
            self._outcome(exc)
            error = StorageUnavailable(str(exc) or type(exc).__name__)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        self._outcome(None)
        for index, (_, future) in enumerate(batch):
            if not future.done():
                future.set_result(receipt_id(batch_id, index))
