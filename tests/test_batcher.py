import asyncio

import pytest

from dlrq.core.receipt import Receipt
from ingest.batcher import GroupCommit, StorageUnavailable
from tests.support.receipts import receipt


def receipts(n):
    return [Receipt(receipt(f"m{i}", "delivered"), "t") for i in range(n)]


class Store:
    """A write that takes a while, as a round trip to Redis does."""

    def __init__(self, delay=0.01, fail=False):
        self.batches = []
        self.delay = delay
        self.fail = fail
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, batch):
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if self.fail:
                raise ConnectionError("Redis is down")
            self.batches.append(batch)
        finally:
            self.in_flight -= 1


def run(coro):
    return asyncio.run(coro)


def test_receipts_arriving_during_a_write_share_the_next_one():
    async def scenario():
        store = Store()
        commit = GroupCommit(store, max_size=100, max_wait=0, timeout=1)
        commit.start()
        first = asyncio.create_task(commit.submit(receipts(1)[0]))
        await asyncio.sleep(0.002)  # the first write is now in flight
        await asyncio.gather(first, *(commit.submit(r) for r in receipts(50)))
        await commit.close()
        return store

    store = run(scenario())
    assert [len(b) for b in store.batches] == [1, 50]
    assert store.max_in_flight == 1


def test_requests_still_being_handled_join_the_write():
    """A busy server writes what it is handling together: fewer, larger batches (RQ jobs)."""

    async def handle(commit, receipt, turns):
        for _ in range(turns):  # reading and parsing a request takes a few loop turns
            await asyncio.sleep(0)
        await commit.submit(receipt)

    async def scenario():
        store = Store(delay=0)
        commit = GroupCommit(store, max_size=100, max_wait=0, timeout=1)
        commit.start()
        await asyncio.gather(*(handle(commit, r, i % 3) for i, r in enumerate(receipts(30))))
        await commit.close()
        return store

    assert [len(b) for b in run(scenario()).batches] == [30]


def test_batches_never_exceed_max_size():
    async def scenario():
        store = Store(delay=0.001)
        commit = GroupCommit(store, max_size=7, max_wait=0.005, timeout=1)
        commit.start()
        await asyncio.gather(*(commit.submit(r) for r in receipts(50)))
        await commit.close()
        return store

    store = run(scenario())
    assert max(len(b) for b in store.batches) <= 7
    assert sum(len(b) for b in store.batches) == 50


def test_max_wait_gathers_a_larger_batch():
    async def scenario():
        store = Store(delay=0)
        commit = GroupCommit(store, max_size=100, max_wait=0.05, timeout=1)
        commit.start()
        tasks = []
        for r in receipts(5):
            tasks.append(asyncio.create_task(commit.submit(r)))
            await asyncio.sleep(0.001)
        await asyncio.gather(*tasks)
        await commit.close()
        return store

    assert [len(b) for b in run(scenario()).batches] == [5]


def test_failed_write_fails_every_request_in_it():
    async def scenario():
        commit = GroupCommit(Store(fail=True), max_size=100, max_wait=0, timeout=1)
        commit.start()
        results = await asyncio.gather(*(commit.submit(r) for r in receipts(10)), return_exceptions=True)
        await commit.close()
        return results

    assert all(isinstance(r, StorageUnavailable) for r in run(scenario()))


def test_slow_write_times_out_instead_of_hanging():
    async def scenario():
        commit = GroupCommit(Store(delay=10), max_size=100, max_wait=0, timeout=0.05)
        commit.start()
        with pytest.raises(StorageUnavailable):
            await asyncio.wait_for(commit.submit(receipts(1)[0]), 5)
        await commit.close()

    run(scenario())


def test_close_stores_what_was_taken_and_refuses_more():
    async def scenario():
        store = Store()
        commit = GroupCommit(store, max_size=100, max_wait=0, timeout=1)
        commit.start()
        tasks = [asyncio.create_task(commit.submit(r)) for r in receipts(20)]
        await asyncio.sleep(0)
        await commit.close()
        await asyncio.gather(*tasks)
        with pytest.raises(StorageUnavailable):
            await commit.submit(receipts(1)[0])
        return store

    assert sum(len(b) for b in run(scenario()).batches) == 20
