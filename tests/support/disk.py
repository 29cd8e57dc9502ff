"""A small disk of the test's own (tmpfs) that can be filled up and emptied again."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


class SmallDisk:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        """Until the disk refuses to take another byte."""
        with open(self.filler, "ab", buffering=0) as filler:
            for size in (1 << 20, 4096, 1):
                try:
                    while True:
                        filler.write(b"\0" * size)
                except OSError:
                    pass

    def empty(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


def mount(parent: Path, size: str) -> SmallDisk | str:
    """A tmpfs mounted at parent/disk (as root); where mounting is not allowed, why not."""
    path = parent / "disk"
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        return f"cannot mount a tmpfs here: {mounted.stderr.strip()}"
    return SmallDisk(path)


@contextmanager
def small_disk(parent: Path, size: str = "16m") -> Iterator[SmallDisk]:
    """For a test: skipped where mounting is not allowed; unmounted after."""
    disk = mount(parent, size)
    if isinstance(disk, str):
        pytest.skip(disk)
    try:
        yield disk
    finally:
        disk.unmount()
