"""Hostile or broken clients must get a clear answer and cost nothing valid (cases 5-10 and 12
of the hardening issue): deep JSON, duplicate parameters, an empty token, huge or slow request
heads, half-sent bodies, a part history grown without bound, and unreadable replay files."""

from __future__ import annotations

import gzip
import json
import os
import resource
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis
from starlette.testclient import TestClient

from dlrq.core import keys
from dlrq.core.records import load_part
from dlrq.core.settings import Settings
from ingest.app import create_app
from tests.support.apps import ingest_and_api
from tests.support.processes import dlrq, dlrq_env, eventually, free_port, spawn, wait_http
from tests.support.queues import drain, queue_of
from tests.support.receipts import receipt

pytestmark = [pytest.mark.integration]
PATH = "/webhooks/delivery-receipt"
DEEP = b"[" * 1100 + b"]" * 1100


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


def queued(r: redis.Redis, settings: Settings) -> int:
    return queue_of(r, settings).count


# 5. JSON nested 1,100 deep ---------------------------------------------------------------------

def test_json_nested_deep_is_a_400_on_every_endpoint(client, r, settings):
    for path in (PATH, "/messages"):
        answer = client.post(path, content=DEEP, headers={"content-type": "application/json"})
        assert answer.status_code == 400 and answer.json() == {"error": "bad_json", "detail": "JSON nested too deeply"}
    deep_object = b'{"messageId": "X", "status": "delivered", "x": ' + DEEP + b"}"
    assert client.post(PATH, content=deep_object, headers={"content-type": "application/json"}).status_code == 400
    assert queued(r, settings) == 0


def test_replay_reports_a_deep_line_and_keeps_the_valid_lines_around_it(redis_url, r, settings, tmp_path):
    lines = [json.dumps(receipt("BEFORE", "delivered", 5)).encode(), DEEP, json.dumps(receipt("AFTER", "delivered", 5)).encode()]
    (tmp_path / "deep.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    result = dlrq(dlrq_env(redis_url), "replay", str(tmp_path / "deep.jsonl"), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stdout.strip() == "sent 2, accepted 2, refused 1 (bad_json 1), failed 0"
    assert "deep.jsonl:2: refused (bad_json): JSON nested too deeply" in result.stderr
    drain(settings)
    assert r.exists(keys.part("BEFORE")) and r.exists(keys.part("AFTER"))


# 6. A parameter given twice --------------------------------------------------------------------

@pytest.mark.parametrize("how", ["query", "form", "json"])
def test_a_receipt_with_a_parameter_given_twice_is_refused(client, r, settings, how):
    fields = "messageId=DUP&status=delivered&status=failed&err-code=0"
    if how == "query":
        answer = client.get(f"{PATH}?{fields}")
    elif how == "form":
        answer = client.post(PATH, content=fields, headers={"content-type": "application/x-www-form-urlencoded"})
    else:
        body = b'{"messageId": "DUP", "status": "delivered", "status": "failed"}'
        answer = client.post(PATH, content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"] == "malformed_field"
    assert "'status'" in answer.json()["detail"] or "status" in answer.json()["detail"]
    assert queued(r, settings) == 0, "nothing stored, no failure alert raised"


def test_a_body_value_still_wins_over_the_query_value_of_the_same_name(client, r, settings):
    answer = client.post(f"{PATH}?messageId=Q&status=accepted", json={"status": "delivered"})
    assert answer.status_code == 204
    [job] = queue_of(r, settings).get_jobs()
    assert job.args[0][0]["params"] == {"messageId": "Q", "status": "delivered"}


# 7. An empty token ----------------------------------------------------------------------------

def test_an_empty_token_is_no_token(redis_url, r, monkeypatch):
    monkeypatch.setenv("DLRQ_API_TOKEN", "")
    monkeypatch.setenv("DLRQ_HOST", "0.0.0.0")
    monkeypatch.setenv("DLRQ_API_HOST", "0.0.0.0")
    settings = Settings(redis_url=redis_url)
    assert settings.api_token is None
    with ingest_and_api(settings) as (ingest, api):
        for c in (ingest, api):
            assert c.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401
            assert c.get("/metrics").status_code == 401
        assert api.get("/messages/X").status_code == 401


# 8 and 9. Huge and slow request heads, half-sent bodies: a real ingest process ---------------

class Ingest:
    """`dlrq ingest` on a port of its own, with an optional open-file limit."""

    def __init__(self, redis_url: str, tmp_path: Path, nofile: int | None = None, **extra: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"ingest-{self.port}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115
        env = dlrq_env(redis_url, DLRQ_PORT=str(self.port), DLRQ_LOG_FORMAT="text", **extra)

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.process = spawn("ingest", env, stdout=log, stderr=log, preexec_fn=limit)
        wait_http(f"{self.base}/healthz")

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))

    def text(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> tuple[int, float]:
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        return code, time.monotonic() - started


def latency_of_receipts(base: str, n: int, stop: threading.Event, into: list[float]) -> None:
    with httpx.Client(base_url=base, timeout=30) as http:
        for i in range(n):
            if stop.is_set():
                return
            started = time.monotonic()
            assert http.post(PATH, json=receipt(f"PROBE{time.monotonic_ns()}-{i}", "delivered", 5)).status_code == 204
            into.append(time.monotonic() - started)


def test_a_huge_request_head_is_cut_off_at_once_and_stalls_nobody(redis_url, r, tmp_path):
    ingest = Ingest(redis_url, tmp_path)
    try:
        before = ingest.rss_kib()
        latencies: list[float] = []
        stop = threading.Event()
        probes = threading.Thread(target=latency_of_receipts, args=(ingest.base, 10_000, stop, latencies))
        probes.start()
        with socket.create_connection(("127.0.0.1", ingest.port)) as sock:
            sock.sendall(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nX-Huge: ")
            sent, answer = 0, b""
            sock.settimeout(5)
            try:
                while sent < 150 * 1024 * 1024:
                    sock.sendall(b"a" * 65_536)
                    sent += 65_536
            except OSError:
                pass  # the ingest answered and closed the connection
            answer = sock.recv(4096)
        time.sleep(0.5)
        stop.set()
        probes.join()
        after = ingest.rss_kib()
    finally:
        code, _ = ingest.stop()
    assert answer.startswith(b"HTTP/1.1 431") and b"headers_too_large" in answer
    assert sent < 8 * 1024 * 1024, f"cut off after {sent} bytes (what the kernel's socket buffers held, at most)"
    assert after - before < 20 * 1024, f"the ingest grew by {(after - before) // 1024} MiB"
    assert latencies and max(latencies) < 1.0, f"slowest receipt meanwhile {max(latencies):.2f} s"
    assert code == 0


def test_a_huge_request_line_is_a_414(redis_url, r, tmp_path):
    ingest = Ingest(redis_url, tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", ingest.port)) as sock:
            sock.sendall(b"GET " + PATH.encode() + b"?x=" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = sock.recv(4096)
    finally:
        ingest.stop()
    assert answer.startswith(b"HTTP/1.1 414") and b"url_too_long" in answer


def test_slow_clients_past_the_open_file_limit_cannot_stall_real_receipts(redis_url, r, tmp_path):
    """1,100 connections sending a header byte every 10 s, against an open-file limit of 1,024."""
    ingest = Ingest(redis_url, tmp_path, nofile=1024, DLRQ_HEADER_TIMEOUT="3")
    slow: list[socket.socket] = []
    try:
        for _ in range(1100):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", ingest.port))
            slow.append(sock)
        time.sleep(0.5)
        for sock in slow:
            try:
                sock.send(b"P")
            except OSError:
                pass
        started = time.monotonic()
        answered: list[float] = []
        with httpx.Client(base_url=ingest.base, timeout=10) as http:
            for i in range(20):
                while True:
                    try:
                        if http.post(PATH, json=receipt(f"REAL{i}", "delivered", 5)).status_code == 204:
                            answered.append(time.monotonic() - started)
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.2)  # a 503 or a refused connection: Vonage sends it again
        assert max(answered) < 8, f"the last real receipt was acknowledged after {max(answered):.1f} s"
        eventually(lambda: "cap" in ingest.text(), 5, "the ingest to say it reached its connection cap")
        eventually(lambda: sum(map(closed_by_peer, slow)) == len(slow), 10,
                   "every slow connection to be cut off (answered 503 at the cap, or timed out)")
    finally:
        for sock in slow:
            sock.close()
        code, _ = ingest.stop()
    assert code == 0


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the ingest closed this connection (after answering on it or not)."""
    try:
        while chunk := sock.recv(65_536):
            del chunk
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_half_sent_bodies_neither_hold_a_stopping_ingest_nor_get_acknowledged(redis_url, r, settings, tmp_path):
    ingest = Ingest(redis_url, tmp_path, DLRQ_SHUTDOWN_GRACE="3", DLRQ_BODY_TIMEOUT="30")
    half: list[socket.socket] = []
    try:
        for i in range(200):
            sock = socket.create_connection(("127.0.0.1", ingest.port))
            body = json.dumps(receipt(f"HALF{i}", "delivered", 5)).encode()
            sock.sendall(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
            half.append(sock)
        time.sleep(0.5)
        code, took = ingest.stop()
    finally:
        for sock in half:
            sock.close()
    assert code == 0 and took < 3 + 3, f"stopped in {took:.1f} s"
    assert queued(r, settings) == 0, "a request cut off was never acknowledged, nor stored"


def test_a_body_sent_too_slowly_is_a_408(redis_url, r, settings, tmp_path):
    ingest = Ingest(redis_url, tmp_path, DLRQ_BODY_TIMEOUT="1")
    try:
        with socket.create_connection(("127.0.0.1", ingest.port)) as sock:
            sock.sendall(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{")
            sock.settimeout(5)
            started = time.monotonic()
            answer = sock.recv(4096)
            took = time.monotonic() - started
    finally:
        ingest.stop()
    assert answer.startswith(b"HTTP/1.1 408") and took < 3
    assert queued(r, settings) == 0


# 10. One part's history grows without bound -----------------------------------------------

def test_a_parts_history_is_bounded_and_what_is_dropped_is_counted(settings, r, caplog):
    big = {f"extra{n}": "x" * 1000 for n in range(40)}  # about 40 KB of unknown fields each
    with TestClient(create_app(settings)) as c:
        for i in range(400):
            params = {**receipt("GROWN", "accepted", 1), "message-timestamp": f"2020-01-01 14:{i // 60:02d}:{i % 60:02d}"}
            assert c.post(PATH, json={**params, **big}).status_code == 204
        drain(settings)
    stored = r.get(keys.part("GROWN"))
    entries = load_part(stored)["history"]
    assert len(stored) <= settings.part_max_bytes and len(entries) <= settings.part_max_receipts
    assert all(len(json.dumps(e)) < 2048 for e in entries), "a stored receipt keeps a bounded remainder of fields"
    assert int(r.hget(keys.COUNTERS, keys.COUNT_DROPPED)) == 400 - len(entries)
    assert any("dropped" in rec.getMessage() and "GROWN" in rec.getMessage() for rec in caplog.records)


# 12. Replay: unreadable files --------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "bad header"])
def test_replay_of_a_damaged_gzip_says_why_and_exits_non_zero(redis_url, r, settings, tmp_path, damage):
    good = b"".join(json.dumps(receipt(f"GZ{i}", "delivered", 5)).encode() + b"\n" for i in range(2000))
    packed = gzip.compress(good)
    path = tmp_path / "record.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2] if damage == "truncated" else b"\x1f\x8b" + os.urandom(200))
    result = dlrq(dlrq_env(redis_url), "replay", str(path), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr and "Aborted" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: could not read") and str(path) in last
    assert "unreadable files 1" in result.stdout
    if damage == "truncated":
        accepted = int(result.stdout.split("accepted ")[1].split(",")[0])
        assert accepted > 0, "the lines read before the damage were replayed"
