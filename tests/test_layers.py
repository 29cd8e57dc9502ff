"""The layout is the data flow: dlrq.cli above ingest | workers above dlrq.core, kept by import-linter."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.processes import ROOT

LINT = str(Path(sys.executable).parent / "lint-imports")


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LINT, "--no-cache"], cwd=tree, capture_output=True, text=True,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})


def test_the_layers_hold():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_a_wing_importing_the_other_is_caught(tmp_path):
    tree = tmp_path / "tree"
    for name in ("dlrq", "ingest", "workers"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree)
    with open(tree / "ingest" / "webhook.py", "a") as module:
        module.write("\nfrom workers import batch  # noqa\n")
    result = lint(tree)
    assert result.returncode == 1 and "ingest.webhook -> workers.batch" in result.stdout, result.stdout


def test_the_code_keeps_its_style():
    """ruff, with the rules pyproject.toml names (pyflakes, pycodestyle, import order)."""
    result = subprocess.run([str(Path(sys.executable).parent / "ruff"), "check", "."], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
