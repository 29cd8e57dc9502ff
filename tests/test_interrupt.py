"""The suite as a contributor runs it: one Ctrl-C in a terminal stops pytest within 10 s, and leaves
no server or worker behind."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import subprocess
import sys
import termios
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.support.processes import ROOT, eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# What a Ctrl-C must stop and not leave behind: in-process workers that ran before it (each once
# installed its own SIGINT handler, and left it), a long property test on the session's embedded
# Valkey; and, in the other case, dlrq processes and a replicated group.
IN_PROCESS = ["tests/test_worker.py",
              "tests/test_isolation.py::test_every_acknowledged_receipt_is_applied_whatever_it_holds"]
PROCESSES = ["tests/test_end_to_end.py", "tests/test_ha.py"]


def marked(mark: str, basetemp: Path) -> list[int]:
    """Processes the interrupted pytest started: those whose environment carries `mark`, and those
    working in its temporary directory (Valkey overwrites its environment with its process title)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            ours = mark.encode() in (entry / "environ").read_bytes()
            ours = ours or Path(os.readlink(entry / "cwd")).is_relative_to(basetemp)
            if ours and (entry / "stat").read_text().split(")")[-1].split()[0] != "Z":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("targets, after", [(IN_PROCESS, 8.0), (PROCESSES, 12.0)], ids=["in-process", "processes"])
def test_one_ctrl_c_stops_the_suite_within_ten_seconds_and_leaves_nothing_running(tmp_path, targets, after):
    mark = f"DLRQ_INTERRUPT_TEST={uuid.uuid4().hex}"
    master, slave = pty.openpty()

    def controlling_terminal() -> None:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    # Only the servers the inner suite starts itself: on the machine's Redis a test would start none.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "DLRQ_TEST_REDIS_URL")}
    env.update(dict([mark.split("=")]), DLRQ_TEST_PROPERTY_EXAMPLES="100000")
    pytest_run = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-x", "-q",
                                   "--basetemp", str(tmp_path / "inner"), *targets],
                                  cwd=ROOT, env=env, stdin=slave, stdout=slave, stderr=slave,
                                  preexec_fn=controlling_terminal)
    os.close(slave)
    output = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            output.extend(chunk)

    def ours() -> list[int]:
        return marked(mark.split("=")[1], tmp_path / "inner")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        def started() -> bool:
            assert pytest_run.poll() is None, f"the inner suite ended by itself:\n{output.decode(errors='replace')}"
            return len(ours()) > 1

        try:
            eventually(started, 60, "the inner suite to start its servers")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{output.decode(errors='replace')[-3000:]}") from None
        time.sleep(after)
        os.write(master, b"\x03")  # what the terminal sends for Ctrl-C: SIGINT to its foreground group
        pressed = time.monotonic()
        code = pytest_run.wait(timeout=30)
        took = time.monotonic() - pressed
        deadline = time.monotonic() + 3
        while ours() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = {pid: _cmdline(pid) for pid in ours()}
    finally:
        if pytest_run.poll() is None:
            os.killpg(pytest_run.pid, signal.SIGKILL)
        for pid in ours():
            os.kill(pid, signal.SIGKILL)
        reader.join(timeout=5)
        os.close(master)
    text = output.decode(errors="replace")
    assert took < 10, f"pytest took {took:.1f} s to stop:\n{text[-3000:]}"
    assert code == 2 and "KeyboardInterrupt" in text, text[-3000:]
    assert not left, f"left running: {left}"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"
