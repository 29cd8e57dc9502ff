"""`dlrq up`: the embedded server (unless DLRQ_REDIS_URL is set), the ingest, the api and one worker, supervised.

Ctrl-C stops the ingest and the worker first (the ingest stores every batch it acknowledged,
the worker finishes its job) and the server last; a second Ctrl-C stops them at once. A
child that exits by itself is started again, with a growing pause, never a reason to stop
the others; so is the server (on the same port, so the others find it again): with
`appendfsync always` it exits rather than acknowledge a write its disk could not take.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from .common import check_accounts, check_handlers, setup_logging, valid_settings
from .embedded import EmbeddedServer, ServerFailed, die_with_parent, owner_alive, stop_orphan

log = logging.getLogger("dlrq.up")
POLL = 0.1
FIRST_PAUSE, LONGEST_PAUSE, SERVER_LONGEST_PAUSE = 1.0, 30.0, 4.0
# A child that ran this long before exiting starts again after the first pause, not a longer one.
HEALTHY_AFTER = 60.0
# How long the ingest and the worker get to stop before they are killed.
STOP_GRACE = 75.0


@dataclass
class Child:
    name: str
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    pause: float = FIRST_PAUSE
    longest_pause: float = LONGEST_PAUSE
    restart_at: float | None = None

    def start(self) -> None:
        # A session of its own: Ctrl-C reaches `dlrq up` only, which asks each child to stop once.
        self.process = subprocess.Popen([sys.executable, "-m", "dlrq", self.name], env=self.env,
                                        start_new_session=True, preexec_fn=die_with_parent)
        self.started, self.restart_at = time.monotonic(), None

    def why(self) -> str:
        return ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(sig)

    def check(self, now: float) -> None:
        """Restart after an unplanned exit, pausing longer each time it exits soon after starting."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                log.info("starting %s again", self.name)
                self.start()
            return
        if self.process is None or self.process.poll() is None:
            return
        self.exited(now, f"exited with status {self.process.returncode}")

    def exited(self, now: float, how: str) -> None:
        ran = now - self.started
        self.pause = FIRST_PAUSE if ran >= HEALTHY_AFTER else min(self.pause * 2, self.longest_pause)
        log.warning("%s %s after %.1f s%s; starting it again in %.0f s", self.name, how, ran, self.why(), self.pause)
        self.restart_at = now + self.pause


class ServerChild(Child):
    """The embedded server, supervised like the others, and stopped after them."""

    def __init__(self, server: EmbeddedServer) -> None:
        """`server` runs already."""
        # Everything waits for it: it is tried again at least every SERVER_LONGEST_PAUSE.
        super().__init__("the embedded server", {}, process=server.process, started=time.monotonic(),
                         longest_pause=SERVER_LONGEST_PAUSE)
        self.server = server

    def start(self) -> None:
        self.started, self.restart_at = time.monotonic(), None
        try:
            self.server.start()
        except ServerFailed:
            self.process = self.server.process
            self.exited(time.monotonic(), "did not start")
            return
        self.process = self.server.process

    def why(self) -> str:
        said = self.server.last_words()
        return f" ({said})" if said else ""


class Signals:
    """Counts SIGINT/SIGTERM: the first asks for a clean stop, the second for an immediate one."""

    def __init__(self) -> None:
        self.count = 0
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._received)

    def _received(self, signum: int, frame: object) -> None:
        self.count += 1


def supervise(children: list[Child], signals: Signals, server: ServerChild | None = None) -> bool:
    """Run until a signal; return True if every child then stopped by itself. The server, if any,
    runs already, is watched like the children, and is left running for the caller to stop last."""
    for child in children:
        child.start()
    while not signals.count:
        now = time.monotonic()
        for child in [*([server] if server else []), *children]:
            child.check(now)
        time.sleep(POLL)
    log.info("stopping: the ingest stores what it acknowledged, the worker finishes its job")
    for child in children:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while any(child.running for child in children):
        if signals.count > 1 or time.monotonic() > deadline:
            log.warning("stopping at once")
            for child in children:
                child.signal(signal.SIGKILL)
            for child in children:
                if child.process is not None:
                    child.process.wait()
            return False
        time.sleep(POLL)
    return True


@click.command()
def up() -> None:
    """Run everything: Redis (embedded unless DLRQ_REDIS_URL is set), the ingest, the api and one worker.
    Ctrl-C stops all."""
    settings = valid_settings()
    setup_logging(settings)
    check_accounts(settings)
    check_handlers(settings)
    signals = Signals()
    env = {**os.environ}
    if settings.redis_url:
        clean = supervise(_children(env, settings.redis_url), signals)
    else:
        data_dir = settings.data_dir.resolve()
        if owner_alive(data_dir):
            raise click.ClickException(f"`dlrq up` already runs for {data_dir}")
        orphan = stop_orphan(data_dir)
        if orphan is not None:
            log.warning("stopped the server a killed `dlrq up` left running for %s (pid %d)", data_dir, orphan)
        server = EmbeddedServer(data_dir, owner=os.getpid())
        try:
            server.start()
            log.info("embedded Valkey at %s, data in %s", server.url, _shown(data_dir))
            clean = supervise(_children(env, server.url), signals, ServerChild(server))
        except ServerFailed as exc:
            raise click.ClickException(str(exc)) from exc
        finally:
            server.stop()
        log.info("embedded Valkey stopped")
    if not clean:
        sys.exit(130)
    log.info("stopped")


def _children(env: dict[str, str], url: str) -> list[Child]:
    env = {**env, "DLRQ_REDIS_URL": url}
    return [Child("ingest", env), Child("api", env), Child("worker", env)]


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
