"""`dlrq up` as a newcomer meets it: in a terminal, Ctrl-C included, with the other commands beside it."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import subprocess
import termios
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from dlrq.cli.embedded import SERVER_FILE, binary, embedded_server
from dlrq.core import keys
from dlrq.core.records import load_part
from dlrq.core.settings import Settings
from tests.support.oracle import dedupe_key, history_keys
from tests.support.processes import DLRQ, dlrq, dlrq_env, eventually, free_port, wait_http
from tests.support.queues import drain
from tests.support.receipts import DOCS_ACCEPTED, DOCS_DELIVERED, receipt

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PATH = "/webhooks/delivery-receipt"


class Terminal:
    """`dlrq up` in a pseudo-terminal of its own, as a newcomer runs it: Ctrl-C is typed, not sent."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.master, slave = pty.openpty()

        def controlling_terminal() -> None:
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

        self.process = subprocess.Popen(DLRQ + ["up"], env=env, cwd=cwd, stdin=slave, stdout=slave, stderr=slave,
                                        preexec_fn=controlling_terminal)
        os.close(slave)
        self.output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            if not chunk:
                return
            self.output += chunk

    def ctrl_c(self) -> None:
        os.write(self.master, b"\x03")

    def text(self) -> str:
        return self.output.decode(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._reader.join(timeout=5)
        os.close(self.master)


def descendants(pid: int) -> list[int]:
    """Every process started by pid, however deep (children in sessions of their own included)."""
    found, frontier = [], [pid]
    while frontier:
        out = subprocess.run(["pgrep", "-P", str(frontier.pop())], capture_output=True, text=True).stdout
        children = [int(p) for p in out.split()]
        found += children
        frontier += children
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def up_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    """The api on a free port too (`dlrq up` starts it beside the ingest)."""
    extra.setdefault("DLRQ_API_PORT", str(free_port()))
    env = dlrq_env(None, DLRQ_DATA_DIR=str(data_dir), DLRQ_PORT=str(port), DLRQ_LOG_LEVEL="INFO", **extra)
    assert "DLRQ_REDIS_URL" not in env
    return env


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_ctrl_c_in_a_terminal_stops_everything_cleanly_and_keeps_every_acknowledged_receipt(tmp_path, data_dir):
    port, api_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    term = Terminal(up_env(data_dir, port, DLRQ_API_PORT=str(api_port)), tmp_path)
    acknowledged: list[dict[str, str]] = []
    stop_posting = threading.Event()

    def post(n: int) -> None:
        with httpx.Client(base_url=base, timeout=5) as http:
            i = 0
            while not stop_posting.is_set():
                params = receipt(f"UP{n}-{i}", "delivered", 5)
                i += 1
                try:
                    if http.post(PATH, json=params).status_code == 204:
                        acknowledged.append(params)
                except httpx.TransportError:
                    time.sleep(0.01)

    try:
        wait_http(f"{base}/readyz", timeout=30)
        wait_http(f"http://127.0.0.1:{api_port}/readyz", timeout=30)
        children = descendants(term.process.pid)
        assert len(children) >= 4, "the server, the ingest, the api and the worker"
        with ThreadPoolExecutor(8) as pool:
            posting = [pool.submit(post, n) for n in range(8)]
            eventually(lambda: len(acknowledged) > 300, 30, "receipts to flow")
            term.ctrl_c()
            pressed = time.monotonic()
            assert term.process.wait(timeout=15) == 0, term.text()
            stopped_in = time.monotonic() - pressed
            stop_posting.set()
            for future in posting:
                future.result()
    finally:
        stop_posting.set()
        term.close()
    output = term.text()
    assert stopped_in < 10, f"dlrq up took {stopped_in:.1f} s to stop"
    assert [c for c in children if alive(c)] == [], "no process outlives dlrq up"
    assert "Traceback" not in output and "WARNING" not in output and "ERROR" not in output, output
    assert not (data_dir / SERVER_FILE).exists()

    with embedded_server(data_dir) as url:
        drain(Settings(redis_url=url))
        client = redis.Redis.from_url(url)
        stored = client.mget([keys.part(p["messageId"]) for p in acknowledged])
        lost = [p["messageId"] for p, doc in zip(acknowledged, stored)
                if doc is None or dedupe_key(p) not in history_keys(p["messageId"], load_part(doc)["history"])]
        client.close()
    assert len(acknowledged) > 300 and lost == [], f"{len(lost)} of {len(acknowledged)} acknowledged receipts lost"


def test_every_command_finds_the_server_dlrq_up_started(tmp_path, data_dir):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = up_env(data_dir, port)
    up = subprocess.Popen(DLRQ + ["up"], env=env, cwd=tmp_path, start_new_session=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"{base}/readyz", timeout=30)
        assert httpx.post(base + PATH, json=DOCS_ACCEPTED).status_code == 204
        assert httpx.get(base + PATH, params=DOCS_DELIVERED).status_code == 204
        message_id = DOCS_DELIVERED["messageId"]
        eventually(lambda: dlrq(env, "show", message_id, check=False, cwd=tmp_path).returncode == 0, 20,
                   "the receipts to be applied")
        shown = json.loads(dlrq(env, "show", message_id, cwd=tmp_path).stdout)
        assert shown["status"] == "delivered" and len(shown["parts"][0]["history"]) == 2
        stats = json.loads(dlrq(env, "stats", "--json", cwd=tmp_path).stdout)
        assert stats["queues"]["dlrq"]["workers"] == 1
        assert stats["server"] == json.loads((data_dir / SERVER_FILE).read_text())["url"]
        exported = dlrq(env, "export", cwd=tmp_path).stdout.splitlines()
        assert [json.loads(line)["params"]["status"] for line in exported] == ["accepted", "delivered"]
        missing = dlrq(env, "show", "NO-SUCH-MESSAGE", check=False, cwd=tmp_path)
        assert missing.returncode == 1
        assert missing.stderr.count("\n") == 1 and stats["server"] in missing.stderr and "dlrq up" in missing.stderr
    finally:
        os.kill(up.pid, signal.SIGINT)
        assert up.wait(timeout=15) == 0


def test_a_second_ctrl_c_stops_at_once(tmp_path, data_dir):
    port = free_port()
    # A handler call that takes a long time keeps the worker busy when Ctrl-C comes.
    env = up_env(data_dir, port, DLRQ_ALERT_HANDLERS="tests.support.probe:linger")
    term = Terminal(env, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", timeout=30)
        assert httpx.post(base + PATH, json=receipt("SLOW", "failed", 5, err_code="3")).status_code == 204
        eventually(lambda: "lingering" in term.text(), 20, "the handler to start")
        term.ctrl_c()
        time.sleep(1)
        assert term.process.poll() is None, "the worker finishes its job first"
        term.ctrl_c()
        assert term.process.wait(timeout=5) != 0
    finally:
        term.close()


def test_a_child_that_dies_is_started_again(tmp_path, data_dir):
    port = free_port()
    env = up_env(data_dir, port)
    up = subprocess.Popen(DLRQ + ["up"], env=env, cwd=tmp_path, start_new_session=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", timeout=30)

        def worker_pid() -> int | None:
            for pid in descendants(up.pid):
                try:
                    if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        return pid
                except FileNotFoundError:
                    continue  # gone since it was listed
            return None

        first = worker_pid()
        assert first is not None
        os.killpg(first, signal.SIGKILL)
        eventually(lambda: worker_pid() not in (None, first), 20, "a new worker")
        assert httpx.get(f"{base}/healthz").status_code == 200, "the ingest went on meanwhile"
        assert httpx.post(base + PATH, json=DOCS_DELIVERED).status_code == 204
        eventually(lambda: dlrq(env, "show", DOCS_DELIVERED["messageId"], check=False, cwd=tmp_path).returncode == 0,
                   20, "the new worker to apply a receipt")
    finally:
        os.kill(up.pid, signal.SIGINT)
        assert up.wait(timeout=15) == 0
        err = up.stderr.read().decode() if up.stderr else ""
    assert "worker exited with status -9" in err and "starting it again" in err, err


def test_up_after_a_kill_9_stops_the_server_left_running_instead_of_starting_a_second(tmp_path, data_dir):
    data_dir.mkdir()
    orphan_port = free_port()
    orphan = subprocess.Popen(
        [str(binary()), "--port", str(orphan_port), "--bind", "127.0.0.1", "--dir", str(data_dir),
         "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"redis://127.0.0.1:{orphan_port}/0"
    eventually(lambda: _pings(url), 10, "the orphan to answer")
    redis.Redis.from_url(url).set("kept", "yes")
    gone = subprocess.Popen(["true"])
    gone.wait()
    (data_dir / SERVER_FILE).write_text(json.dumps({"url": url, "pid": orphan.pid, "owner": gone.pid}))

    port = free_port()
    env = up_env(data_dir, port)
    up = subprocess.Popen(DLRQ + ["up"], env=env, cwd=tmp_path, start_new_session=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=30)
        assert orphan.wait(timeout=5) == 0, "the orphan was asked to stop, and wrote its files"
        new_url = json.loads((data_dir / SERVER_FILE).read_text())["url"]
        assert new_url != url and redis.Redis.from_url(new_url).get("kept") == b"yes"
    finally:
        os.kill(up.pid, signal.SIGINT)
        assert up.wait(timeout=15) == 0
        err = up.stderr.read().decode() if up.stderr else ""
        if orphan.poll() is None:
            orphan.kill()
    assert "stopped the server a killed `dlrq up` left running" in err


def test_up_after_a_kill_9_of_up_starts_cleanly_on_the_same_files(tmp_path, data_dir):
    port = free_port()
    env = up_env(data_dir, port)
    base = f"http://127.0.0.1:{port}"
    first = subprocess.Popen(DLRQ + ["up"], env=env, cwd=tmp_path, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"{base}/readyz", timeout=30)
    assert httpx.post(base + PATH, json=DOCS_DELIVERED).status_code == 204
    children = descendants(first.pid)
    first.kill()
    first.wait()
    eventually(lambda: not any(alive(c) for c in children), 15, "the children of a killed dlrq up to stop")
    second = subprocess.Popen(DLRQ + ["up"], env=env, cwd=tmp_path, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"{base}/readyz", timeout=30)
        eventually(lambda: dlrq(env, "show", DOCS_DELIVERED["messageId"], check=False, cwd=tmp_path).returncode == 0,
                   20, "the receipt acknowledged before the kill")
        servers = [p for p in descendants(second.pid) if Path(f"/proc/{p}/exe").resolve() == binary().resolve()]
        assert len(servers) == 1
    finally:
        os.kill(second.pid, signal.SIGINT)
        assert second.wait(timeout=15) == 0


def _pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.ConnectionError:
        return False
