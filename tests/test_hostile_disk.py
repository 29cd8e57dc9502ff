"""A full disk must not cost an acknowledged receipt (case 2 of the hardening issue).

With `appendfsync everysec`, a write the disk refuses was already answered OK: the receipt it
carried is lost if Valkey stops before space comes back. `dlrq up`'s server (and the compose
file's) use `appendfsync always`: Valkey then exits instead of answering, nothing is
acknowledged, `dlrq up` starts it again once the disk has room, and every receipt Vonage
resends is taken then. The disk is a tmpfs the test mounts and fills.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import pytest
import redis

from dlrq.cli.embedded import SERVER_FILE, EmbeddedServer, ServerFailed, embedded_server, running_server
from dlrq.core import keys
from dlrq.core.records import load_part
from dlrq.core.settings import Settings
from tests.support.disk import small_disk
from tests.support.oracle import dedupe_key, history_keys
from tests.support.processes import DLRQ, dlrq_env, eventually, free_port, wait_http
from tests.support.queues import drain, queue_of
from tests.support.receipts import receipt
from tests.support.sender import Sender

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_dlrq_up_on_a_disk_that_fills_up_loses_nothing_it_acknowledged(tmp_path):
    with small_disk(tmp_path, "64m") as disk:
        port = free_port()
        env = dlrq_env(None, DLRQ_DATA_DIR=str(disk.path), DLRQ_PORT=str(port), DLRQ_LOG_LEVEL="INFO",
                       DLRQ_LOG_FORMAT="text")
        log = open(tmp_path / "up.log", "wb")  # noqa: SIM115
        up = subprocess.Popen(DLRQ + ["up"], env=env, cwd=tmp_path, start_new_session=True, stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{base}/readyz", timeout=30)
            sender = Sender(base)
            receipts = [receipt(f"DISK{i:05d}", "delivered", 5) for i in range(3000)]
            sending = threading.Thread(target=sender.send_all, args=(receipts,))
            sending.start()
            while len(sender.acknowledged) < 500:
                time.sleep(0.05)
            disk.fill()
            time.sleep(4)
            disk.empty()
            sending.join()
            assert sender.answers["503"] + sender.answers["refused"] > 0, "the full disk was felt"
            with redis.Redis.from_url(json.loads((disk.path / SERVER_FILE).read_text())["url"]) as r:
                queue = queue_of(r, Settings())
                eventually(lambda: queue.count + r.llen(queue.intermediate_queue_key) == 0, 30,
                           "dlrq up's worker to apply every batch")
        finally:
            up.send_signal(signal.SIGINT)
            code = up.wait(timeout=60)
            log.close()
        text = (tmp_path / "up.log").read_text()
        assert code == 0, text
        assert "the embedded server exited" in text and "starting it again" in text, text
        assert not (disk.path / SERVER_FILE).exists()
        with embedded_server(disk.path) as url:
            drain(Settings(redis_url=url))
            client = redis.Redis.from_url(url)
            acked = {p["messageId"]: p for p in sender.acknowledged}
            stored = dict(zip(acked, client.mget([keys.part(i) for i in acked])))
            lost = [i for i, doc in stored.items()
                    if doc is None or dedupe_key(acked[i]) not in history_keys(i, load_part(doc)["history"])]
            client.close()
    assert len(acked) == len(receipts) and lost == [], f"{len(lost)} acknowledged receipts lost: {lost[:5]}"


def test_a_server_started_again_on_a_full_disk_is_stopped_not_left_running_unrecorded(tmp_path):
    with small_disk(tmp_path) as disk:
        server = EmbeddedServer(disk.path)
        server.start()
        first = json.loads((disk.path / SERVER_FILE).read_text())
        server.process.kill()
        server.process.wait()
        disk.fill()
        with pytest.raises(ServerFailed):
            server.start()
        assert server.exit_status() is not None, "a server no command can find was left running"
        assert json.loads((disk.path / SERVER_FILE).read_text()) == first, "the record was damaged"
        disk.empty()
        server.start()
        try:
            assert running_server(disk.path) == server.url
        finally:
            server.stop()
