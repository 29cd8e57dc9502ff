"""The failover edition: a primary, two replicas and three sentinels (down-after 2 s), the
ingest and workers finding the primary through the sentinels, under Vonage-like load while
the primary is killed or frozen, a replica frozen as the primary dies, and a sentinel killed.

With DLRQ_ACK_REPLICAS=1 nothing acknowledged may be lost; with 0 (`--ack-replicas 0`), the
run shows what replicated acknowledgements are for.
"""

from __future__ import annotations

import asyncio
import signal
import time

from tests.support.ha import Node

from .run import Run

# After a failover, the group is given this long to settle (the old primary back as a replica)
# before the next fault.
SETTLE = 4


class FailoverRun(Run):
    async def faults(self, t0: float) -> None:
        group = self.cluster.group
        await self._healthy_at(t0, 0.12)
        await self._kill_primary("primary SIGKILL")
        await self._healthy_at(t0, 0.32)
        began = self.fault_begins()
        frozen = await asyncio.to_thread(self._primary)
        frozen.signal(signal.SIGSTOP)
        froze = time.monotonic()
        self._recover("primary frozen 10 s (failed over)", began)
        await asyncio.to_thread(group.wait_new_primary, frozen.port)
        await asyncio.sleep(max(0.0, froze + 10 - time.monotonic()))
        frozen.signal(signal.SIGCONT)
        await self._healthy_at(t0, 0.52)
        replica = await asyncio.to_thread(self._a_replica)
        replica.signal(signal.SIGSTOP)
        await asyncio.sleep(3)  # the primary goes on taking writes, the other replica confirming them
        await self._kill_primary("replica frozen, then primary SIGKILL", thaw=replica)
        await self._healthy_at(t0, 0.7)
        # The replicas cut off (frozen, their links closed): what the primary takes now exists nowhere
        # else. It takes nothing with min-replicas-to-write 1; without it, it acknowledges what is lost
        # with it, unless acknowledgements wait for a replica.
        replicas = [n for n in group.data_nodes if n.port != group.primary_port()]
        for node in replicas:
            node.signal(signal.SIGSTOP)
        await asyncio.to_thread(self._cut_replicas_off)
        await asyncio.sleep(3)
        await self._kill_primary("replicas cut off 3 s, then primary SIGKILL", thaw=replicas)
        await self._healthy_at(t0, 0.88)
        sentinel = group.sentinels[self.rng.randrange(len(group.sentinels))]
        began = self.fault_begins()
        sentinel.kill()
        self._recover("a sentinel SIGKILL", began)
        await asyncio.sleep(3)
        sentinel.start()

    async def _healthy_at(self, t0: float, fraction: float) -> None:
        """At that point of the run, and once the group has healed from the fault before: every replica
        in sync with the primary the sentinels name. (Two failures closer than that can lose what a
        lagging replica, promoted, never had: Sentinel promotes the best replica it can reach.)"""
        await self._at(t0, fraction)
        group = self.cluster.group
        started = time.monotonic()
        while not await asyncio.to_thread(lambda: group.linked(len(group.replicas)) and group.sentinels_agree()):
            await asyncio.sleep(0.2)
        self.report.waits.append(round(time.monotonic() - started, 1))

    async def _kill_primary(self, fault: str, thaw: Node | list[Node] | None = None) -> None:
        """`thaw`: a frozen replica, resumed once another has been promoted (it must not be the one);
        or frozen replicas, resumed at once (one of them is then promoted)."""
        group = self.cluster.group
        began = self.fault_begins()
        primary = await asyncio.to_thread(self._primary)
        primary.kill()
        self._recover(fault, began)
        if isinstance(thaw, list):
            for node in thaw:
                node.signal(signal.SIGCONT)
        promoted = await asyncio.to_thread(group.wait_new_primary, primary.port)
        if isinstance(thaw, Node):
            assert promoted is not thaw, "Sentinel promoted the frozen replica"
            thaw.signal(signal.SIGCONT)
        await asyncio.sleep(SETTLE)
        primary.start()  # it comes back as it was, and Sentinel makes it a replica of the new primary

    def _cut_replicas_off(self) -> None:
        with self._primary().client() as client:
            client.execute_command("CLIENT", "KILL", "TYPE", "replica")

    def _primary(self) -> Node:
        group = self.cluster.group
        return group.node(group.primary_port())

    def _a_replica(self) -> Node:
        group = self.cluster.group
        primary = group.primary_port()
        return next(n for n in group.data_nodes if n.port != primary and n.process and n.process.poll() is None)
