"""`dlrq up`: the embedded server (unless DLRQ_REDIS_URL is set), the ingest and one worker, supervised.

Ctrl-C stops the ingest and the worker first (the ingest stores every batch it acknowledged,
the worker finishes its job) and the server last; a second Ctrl-C stops them at once. A
child that exits by itself is started again, with a growing pause, never a reason to stop
the others.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from dlrq.core.settings import get_settings

from .common import setup_logging
from .embedded import die_with_parent, embedded_server, owner_alive, stop_orphan

log = logging.getLogger("dlrq.up")
POLL = 0.1
FIRST_PAUSE, LONGEST_PAUSE = 1.0, 30.0
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
    restart_at: float | None = None
    exits: list[int] = field(default_factory=list)

    def start(self) -> None:
        # A session of its own: Ctrl-C reaches `dlrq up` only, which asks each child to stop once.
        self.process = subprocess.Popen([sys.executable, "-m", "dlrq", self.name], env=self.env,
                                        start_new_session=True, preexec_fn=die_with_parent)
        self.started, self.restart_at = time.monotonic(), None

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
        code = self.process.returncode
        ran = now - self.started
        self.pause = FIRST_PAUSE if ran >= HEALTHY_AFTER else min(self.pause * 2, LONGEST_PAUSE)
        self.exits.append(code)
        log.warning("%s exited with status %s after %.1f s; starting it again in %.0f s",
                    self.name, code, ran, self.pause)
        self.restart_at = now + self.pause


class Signals:
    """Counts SIGINT/SIGTERM: the first asks for a clean stop, the second for an immediate one."""

    def __init__(self) -> None:
        self.count = 0
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._received)

    def _received(self, signum: int, frame: object) -> None:
        self.count += 1


def supervise(children: list[Child], signals: Signals) -> bool:
    """Run until a signal; return True if every child then stopped by itself."""
    for child in children:
        child.start()
    while not signals.count:
        now = time.monotonic()
        for child in children:
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
    """Run everything: Redis (embedded unless DLRQ_REDIS_URL is set), the ingest and one worker. Ctrl-C stops all."""
    settings = get_settings()
    setup_logging(settings)
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
        with embedded_server(data_dir, owner=os.getpid()) as url:
            log.info("embedded Valkey at %s, data in %s", url, _shown(data_dir))
            clean = supervise(_children(env, url), signals)
        log.info("embedded Valkey stopped")
    if not clean:
        sys.exit(130)
    log.info("stopped")


def _children(env: dict[str, str], url: str) -> list[Child]:
    env = {**env, "DLRQ_REDIS_URL": url}
    return [Child("ingest", env), Child("worker", env)]


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
